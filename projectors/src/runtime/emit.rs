//! Handing a committed batch's invalidations out (issue 15): one [`Invalidation`] per tenant of
//! the batch, its keys sorted, at the batch's last position — only once the commit has landed,
//! so never before it is visible (guarantee 1 of `invalidation/mod.rs`; for a view whose
//! commits become visible only within the second of view-store guarantee 3, the dispatcher holds
//! it that second, `Queued::not_before`). Handing out never waits (`invalidation/queue.rs`).
//!
//! A rebuilding generation's projector is not `live`: it hands nothing out per document. At the
//! switch, the host calls [`Emission::go_live`], which hands one whole-view invalidation of
//! every tenant out at the new generation's checkpoint and turns per-document ones on, under
//! the lock `landed` takes too, so no batch falls between the two.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_store::Position;
use tokio::time::Instant;

use crate::invalidation::queue::Invalidations;
use crate::invalidation::{FlushReason, InvalidatedKey, Invalidation, Scope};

use super::projection::Projection;
use super::status::ProjectionStatus;
use super::Projector;

/// How long after `commit` returns a view without `visible_on_return` may still hide it
/// (view-store guarantee 3).
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

impl<P: Projection> Projector<P> {
    /// Hands the invalidations of its commits to `out` — from the start when `live`, else only
    /// once [`Emission::go_live`] is called (a rebuilding generation, at its switch).
    pub fn invalidations(mut self, out: Invalidations, live: bool) -> Self {
        let visible = self.view.capabilities().visible_on_return;
        self.emission = Arc::new(Emission::new(out, Arc::clone(&self.status), live, visible));
        self
    }

    /// The handle the host turns a rebuilt generation's invalidations on with.
    pub fn emission(&self) -> Arc<Emission> {
        Arc::clone(&self.emission)
    }
}

/// A projector's way out for invalidations.
#[derive(Debug)]
pub struct Emission {
    out: Invalidations,
    status: Arc<ProjectionStatus>,
    live: Mutex<bool>,
    visible_on_return: bool,
}

impl Emission {
    pub(super) fn new(out: Invalidations, status: Arc<ProjectionStatus>, live: bool, visible_on_return: bool) -> Self {
        Emission { out, status, live: Mutex::new(live), visible_on_return }
    }

    /// Records a landed commit in the status figures and, when live, hands its keys out.
    pub(super) fn landed(&self, last: Position, events: u64, parked: u64, keys: Vec<(String, InvalidatedKey)>) {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        self.status.committed(last, events, parked);
        if !*live || keys.is_empty() || !self.out.is_active() {
            return;
        }
        let mut tenants: BTreeMap<String, Vec<InvalidatedKey>> = BTreeMap::new();
        for (tenant, key) in keys {
            tenants.entry(tenant).or_default().push(key);
        }
        let not_before = (!self.visible_on_return).then(|| Instant::now() + VISIBLE_WITHIN);
        for (tenant, mut keys) in tenants {
            keys.sort_unstable();
            keys.dedup();
            let invalidation = Invalidation {
                tenant: Some(tenant),
                view: self.status.name.to_owned(),
                position: last,
                scope: Scope::Keys { keys },
            };
            self.out.hand(invalidation, not_before);
        }
    }

    /// The switch of a rebuild (see the module doc): one whole-view invalidation of every tenant
    /// at this generation's checkpoint, then per-document ones from the next commit on.
    pub fn go_live(&self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if *live {
            return;
        }
        *live = true;
        if let Some(position) = self.status.snapshot().checkpoint {
            let not_before = (!self.visible_on_return).then(|| Instant::now() + VISIBLE_WITHIN);
            self.out.hand(
                Invalidation {
                    tenant: None,
                    view: self.status.name.to_owned(),
                    position,
                    scope: Scope::WholeView { reason: FlushReason::Rebuild },
                },
                not_before,
            );
        }
    }
}
