//! `RedisSink`: delivers invalidations to Redis — unlinks the cache keys they name, appends them
//! to the view's stream under ids derived from their positions, publishes them on the channel.
//!
//! Why one Lua script per invalidation rather than `MULTI`/`EXEC`: the entry id of an
//! invalidation needs a read before the write (a second invalidation of the same position, one
//! per tenant of a batch, takes the next `n` of `<code>-<n>`, while the same invalidation again
//! must be recognised as delivered), and a transaction cannot branch on a read; nor does `EXEC`
//! skip its other commands when the `XADD` is refused. The script does the read, the `XADD`, the
//! `UNLINK` and the `PUBLISH` atomically (nothing runs on the server in between, and the AOF
//! holds them as one unit), so the stream holding an entry means its keys were unlinked: the
//! stream's last-generated id is the sink's checkpoint. A re-publish is refused by Redis itself:
//! the same invalidation at the top position is found there, and an older one meets `XADD`'s
//! "equal or smaller than the target stream top item", both answered as "already delivered"
//! without touching a key. A whole-view invalidation first unlinks every key of the view's
//! templates with `SCAN` and `UNLINK` of an escaped pattern (never `KEYS`, which stops the
//! server), then appends its entry: a crash between the two repeats the scan.

use std::sync::Arc;

use annals_store::Position;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncConnectionConfig, Script};

use super::config::{redact, RedisConfig};
use super::keys::kinds_of_view;
use super::stream::{classify, stream_info};
use crate::invalidation::{Invalidation, InvalidationError, InvalidationSink, Scope};

/// One call per (view, position) group of invalidations. KEYS[1]: the view's stream; KEYS[2..]:
/// the cache keys of every invalidation of the group, one after another. ARGV: the position
/// code, MAXLEN, the channel, then per invalidation its JSON and how many keys are its own.
/// Answers `{fresh, id}` per invalidation: `fresh` is 1 when appended now, 0 when the stream
/// already held it (or a later position). All of a group's entries appear to readers at once.
const DELIVER: &str = r#"
local stream, code, maxlen, channel = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local held, seq = {}, 0
for _, entry in ipairs(redis.call('XRANGE', stream, code .. '-0', code .. '-18446744073709551615')) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'invalidation' then held[fields[i + 1]] = entry[1] end
  end
  seq = tonumber(string.match(entry[1], '%-(%d+)$'))
end
local out, k = {}, 2
for a = 4, #ARGV, 2 do
  local payload, nkeys = ARGV[a], tonumber(ARGV[a + 1])
  local id, fresh = held[payload], 0
  if not id then
    seq = seq + 1
    id = code .. '-' .. seq
    local added = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, id, 'invalidation', payload)
    if type(added) == 'table' and added.err then
      if not string.find(added.err, 'equal or smaller', 1, true) then return added end
    else
      fresh = 1
      held[payload] = id
      for i = k, k + nkeys - 1, 1000 do
        redis.call('UNLINK', unpack(KEYS, i, math.min(i + 999, k + nkeys - 1)))
      end
      redis.call('PUBLISH', channel, payload)
    end
  end
  k = k + nkeys
  out[#out + 1] = {fresh, id}
end
return out
"#;

/// Keys asked for per `SCAN` step of a whole-view invalidation.
const SCAN_COUNT: usize = 1000;

/// The Redis [`InvalidationSink`]. Cheap to clone; connects lazily and reconnects by itself, so
/// a Redis that is down at start or goes away costs `Unavailable` answers, never a panic.
#[derive(Clone)]
pub struct RedisSink {
    config: Arc<RedisConfig>,
    connection: ConnectionManager,
    script: Arc<Script>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink").field("url", &redact(self.config.url())).finish_non_exhaustive()
    }
}

/// What one [`RedisSink::deliver_counted`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Invalidations appended to their stream now.
    pub appended: u64,
    /// Invalidations the stream already held (a re-publish).
    pub duplicates: u64,
}

impl RedisSink {
    /// A sink for `config`; must be called inside a tokio runtime. Connects on first use.
    pub fn new(config: RedisConfig) -> Result<RedisSink, InvalidationError> {
        let connection = super::connection_manager(&config)?;
        Ok(RedisSink { config: Arc::new(config), connection, script: Arc::new(Script::new(DELIVER)) })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// [`InvalidationSink::deliver`], saying how many were new and how many re-published.
    pub async fn deliver_counted(&self, batch: &[Invalidation]) -> Result<Delivered, InvalidationError> {
        let mut con = self.connection.clone();
        let mut delivered = Delivered::default();
        let mut pipe = Pipeline::new(&self.script);
        // Consecutive invalidations of one view and position go to one script call, so a reader
        // never sees some of a position's entries without the others (it resumes by position).
        for group in batch.chunk_by(|a, b| a.view == b.view && a.position == b.position) {
            let whole_views: Vec<&Invalidation> =
                group.iter().filter(|i| matches!(i.scope, Scope::WholeView { .. })).collect();
            if !whole_views.is_empty() {
                // The scan goes before the group's entries; what is queued goes before the scan.
                pipe.run(&mut con, &mut delivered).await?;
                for invalidation in whole_views {
                    self.unlink_view(&mut con, invalidation).await?;
                }
            }
            pipe.push(&self.config, group)?;
        }
        pipe.run(&mut con, &mut delivered).await?;
        Ok(delivered)
    }

    /// Unlinks every key of the view's templates of the invalidation's tenant (every tenant's for
    /// `None`): `SCAN MATCH` with the escaped pattern, `UNLINK` per step.
    async fn unlink_view(
        &self,
        con: &mut ConnectionManager,
        invalidation: &Invalidation,
    ) -> Result<(), InvalidationError> {
        let mut unlinked = 0usize;
        for kind in kinds_of_view(&invalidation.view) {
            let Some(template) = self.config.template(*kind) else { continue };
            let pattern = template.pattern(invalidation.tenant.as_deref());
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(con)
                    .await
                    .map_err(classify)?;
                if !keys.is_empty() {
                    unlinked += keys.len();
                    redis::cmd("UNLINK").arg(&keys).query_async::<()>(con).await.map_err(classify)?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        tracing::info!(view = %invalidation.view, tenant = ?invalidation.tenant, unlinked, "whole view invalidated in redis");
        Ok(())
    }
}

/// Script calls queued for one round trip. Each call is atomic on its own and they run in
/// order, so a failure part-way leaves a prefix delivered, which the retry finds as duplicates.
struct Pipeline<'s> {
    script: &'s Script,
    pipe: redis::Pipeline,
    calls: usize,
}

impl<'s> Pipeline<'s> {
    fn new(script: &'s Script) -> Pipeline<'s> {
        Pipeline { script, pipe: redis::pipe(), calls: 0 }
    }

    /// Queues one group (one view, one position).
    fn push(&mut self, config: &RedisConfig, group: &[Invalidation]) -> Result<(), InvalidationError> {
        let Some(first) = group.first() else { return Ok(()) };
        let mut invocation = self.script.key(config.stream(&first.view));
        invocation.arg(first.position.code()).arg(config.maxlen()).arg(config.channel(&first.view));
        for invalidation in group {
            let payload = serde_json::to_string(invalidation)
                .map_err(|e| InvalidationError::Refused { backend: "redis", reason: format!("encode: {e}") })?;
            let mut count = 0usize;
            if let Scope::Keys { keys } = &invalidation.scope {
                let Some(tenant) = invalidation.tenant.as_deref() else {
                    return Err(InvalidationError::Refused {
                        backend: "redis",
                        reason: format!("an invalidation of keys of view {} names no tenant", invalidation.view),
                    });
                };
                for key in keys {
                    if let Some(template) = config.template(key.kind) {
                        invocation.key(template.render(tenant, &key.value));
                        count += 1;
                    }
                }
            }
            invocation.arg(payload).arg(count);
        }
        self.pipe.invoke_script(&invocation);
        self.calls += 1;
        Ok(())
    }

    /// Sends what is queued.
    async fn run(&mut self, con: &mut ConnectionManager, delivered: &mut Delivered) -> Result<(), InvalidationError> {
        if self.calls == 0 {
            return Ok(());
        }
        let answers: Vec<Vec<(u8, String)>> = match self.pipe.query_async(con).await {
            // A Redis that restarted (or flushed its scripts) has no script to run: the calls
            // failed having done nothing (or, had another process loaded it meanwhile, the later
            // ones ran and are found as duplicates), so loading it and sending them again
            // delivers each once.
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                    || e.to_string().contains("NOSCRIPT") =>
            {
                tracing::debug!("loading the invalidation script into redis");
                self.script.load_async(con).await.map_err(classify)?;
                self.pipe.query_async(con).await.map_err(classify)?
            }
            answer => answer.map_err(classify)?,
        };
        self.pipe = redis::pipe();
        self.calls = 0;
        for (fresh, id) in answers.into_iter().flatten() {
            if fresh == 1 {
                delivered.appended += 1;
            } else {
                delivered.duplicates += 1;
                tracing::debug!(entry = %id, "invalidation already delivered");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl InvalidationSink for RedisSink {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn deliver(&self, batch: &[Invalidation]) -> Result<(), InvalidationError> {
        self.deliver_counted(batch).await.map(|_| ())
    }

    /// The position of the stream's last-generated id: durable in Redis, and never ahead of an
    /// unlink (the script writes both at once).
    async fn checkpoint(&self, view: &str) -> Result<Option<Position>, InvalidationError> {
        let mut con = self.connection.clone();
        let info = stream_info(&mut con, &self.config.stream(view)).await.map_err(classify)?;
        Ok(info.and_then(|i| i.last_generated).filter(|id| !id.is_zero()).map(|id| Position::from_code(id.code)))
    }
}

/// A connection of its own (a feed's blocking reads must not hold up a shared one), with a
/// response timeout past `block`.
pub(super) async fn dedicated_connection(
    config: &RedisConfig,
) -> Result<redis::aio::MultiplexedConnection, InvalidationError> {
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.timeout()))
        .set_response_timeout(Some(config.block() + config.timeout()));
    config.client().get_multiplexed_async_connection_with_config(&settings).await.map_err(classify)
}
