//! The integrity tree of a running server: an RFC 9162 Merkle tree (`annals_integrity::MerkleLog`)
//! over `$all` — leaf `i` is the event at log position `i` — kept up by a task that follows the
//! log, off the append path, plus the keys and the signed tree heads.
//!
//! ```text
//! DATA_DIR/integrity/
//!   tree/          the MerkleLog's level files (derived from the log; re-fed after a crash)
//!   signing.key    the Ed25519 key that signs tree heads (32 bytes, 0600, made at first start)
//!   secret         the 32-byte HMAC key of the namespace tags (0600, made at first start)
//!   heads.jsonl    every signed head, one JSON object a line (what exports are cut against)
//! ```
//!
//! Positions are dense (0, 1, 2, …) in the embedded store, so the leaf index is the position. A
//! backend whose positions are sparse would map them to ordinals; this follower refuses such a
//! log (it stops and says so) rather than build a tree whose indices are not positions.

pub mod export_format;
mod export_read;
pub mod export_write;
pub mod leaf;
pub mod selection;
pub mod verify_export;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use annals_integrity::{
    ConsistencyProof, Hash, InclusionProof, IntegrityError, LeafIndex, MerkleLog, RangeProof, SignedTreeHead,
    Timestamp, TreePublicKey, TreeSigner, TreeSize,
};
use annals_store::{EventFilter, EventStore, RecordedEvent, StoreError, SubscribeFrom, SubscriptionMessage};
use rand::RngCore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the follower signs a head (if the tree grew) and makes the tree durable.
const SIGN_INTERVAL: Duration = Duration::from_secs(10);
/// How often, at most, the follower reads the live log: the tree need not see each group commit.
const FOLLOW_PACE: Duration = Duration::from_millis(20);
/// Namespaces whose tag the follower keeps (then forgets them all): a tag is an HMAC, two SHA-256
/// runs more per event, which the follower took from the appends on a small machine.
const FOLLOW_TAGS: usize = 4096;

/// The tree, its keys and its signed heads; shared by the follower task and the routes.
pub struct Integrity {
    dir: PathBuf,
    tree: RwLock<MerkleLog>,
    signer: TreeSigner,
    secret: [u8; 32],
    /// The first head signed for each size, by size; the heads file holds the same.
    heads: Mutex<BTreeMap<u64, SignedTreeHead>>,
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrity").field("dir", &self.dir).field("signer", &self.signer).finish_non_exhaustive()
    }
}

impl Integrity {
    /// Opens (creating at first start) `DATA_DIR/integrity/`.
    pub fn open(data_dir: &Path) -> Result<Arc<Self>, IntegrityError> {
        let dir = data_dir.join("integrity");
        fs::create_dir_all(&dir).map_err(|source| IntegrityError::Io { path: dir.clone(), source })?;
        let tree = MerkleLog::open(&dir.join("tree"))?;
        let signer = TreeSigner::load_or_create(&dir.join("signing.key"))?;
        let secret = load_or_create_secret(&dir.join("secret"))?;
        let heads = load_heads(&dir.join("heads.jsonl"));
        info!(tree_size = tree.size().get(), key_id = %signer.public_key().key_id(), "integrity tree opened");
        Ok(Arc::new(Self { dir, tree: RwLock::new(tree), signer, secret, heads: Mutex::new(heads) }))
    }

    pub fn public_key(&self) -> TreePublicKey {
        self.signer.public_key()
    }

    /// The number of leaves fed so far.
    pub fn size(&self) -> TreeSize {
        self.tree.read().expect("tree lock").size()
    }

    /// The tag of a namespace (a tenant's name).
    pub fn tag(&self, namespace: &str) -> [u8; 32] {
        leaf::tag(&self.secret, namespace)
    }

    /// An event's canonical bytes and its leaf.
    pub fn leaf_of(&self, event: &RecordedEvent) -> (Vec<u8>, [u8; leaf::LEAF_LEN]) {
        let bytes = leaf::event_bytes(event);
        let leaf = leaf::leaf(&self.tag(leaf::namespace(event.stream.as_str())), &bytes);
        (bytes, leaf)
    }

    /// The latest signed head, if any was signed.
    pub fn latest_head(&self) -> Option<SignedTreeHead> {
        self.heads.lock().expect("heads lock").values().next_back().copied()
    }

    /// The head signed for `size`, if one was.
    pub fn head_of_size(&self, size: TreeSize) -> Option<SignedTreeHead> {
        self.heads.lock().expect("heads lock").get(&size.get()).copied()
    }

    /// A head of the tree as fed now: the latest signed one if the tree has not grown since,
    /// else a new one (recorded).
    pub fn current_head(&self) -> Result<SignedTreeHead, IntegrityError> {
        let head = self.tree.read().expect("tree lock").head();
        match self.latest_head() {
            Some(latest) if latest.tree_size == head.tree_size => Ok(latest),
            _ => self.sign_now(),
        }
    }

    /// Signs the tree as fed now, with the time now; records it if it is the first of its size.
    pub fn sign_now(&self) -> Result<SignedTreeHead, IntegrityError> {
        let head = self.tree.read().expect("tree lock").head();
        let signed = self.signer.sign(&head, Timestamp::now());
        let mut heads = self.heads.lock().expect("heads lock");
        if let std::collections::btree_map::Entry::Vacant(slot) = heads.entry(head.tree_size.get()) {
            append_head(&self.dir.join("heads.jsonl"), &signed)?;
            slot.insert(signed);
        }
        Ok(signed)
    }

    pub fn inclusion_proof(&self, index: LeafIndex, size: TreeSize) -> Result<InclusionProof, IntegrityError> {
        self.tree.read().expect("tree lock").inclusion_proof(index, size)
    }

    pub fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<ConsistencyProof, IntegrityError> {
        self.tree.read().expect("tree lock").consistency_proof(from, to)
    }

    /// The leaf hashes the tree holds at `first..first + count` (under one lock).
    pub fn leaf_hashes(&self, first: u64, count: u64) -> Result<Vec<Hash>, IntegrityError> {
        self.tree.read().expect("tree lock").leaf_hashes(LeafIndex::new(first), count)
    }

    pub fn range_proof(&self, first: LeafIndex, last: LeafIndex, size: TreeSize) -> Result<RangeProof, IntegrityError> {
        self.tree.read().expect("tree lock").range_proof(first, last, size)
    }

    fn sync(&self) -> Result<(), IntegrityError> {
        self.tree.write().expect("tree lock").sync()
    }
}

/// Starts the follower: feeds the tree from `$all`, signs a head every `SIGN_INTERVAL` when the
/// tree grew, syncs the tree then and when `shutdown` fires.
pub fn follow(
    integrity: Arc<Integrity>,
    store: Arc<dyn EventStore>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run(&integrity, store.as_ref(), &shutdown).await {
            warn!(error = %e, "the integrity tree stopped following the log");
        }
        let synced = {
            let integrity = Arc::clone(&integrity);
            tokio::task::spawn_blocking(move || integrity.sync()).await
        };
        match synced {
            Ok(Ok(())) => info!(tree_size = integrity.size().get(), "integrity tree synced"),
            Ok(Err(e)) => warn!(error = %e, "cannot sync the integrity tree"),
            Err(e) => warn!(error = %e, "the integrity sync task failed"),
        }
    })
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tree(#[from] IntegrityError),
    #[error(
        "the log's position {position} is not the tree's next leaf {expected}: sparse positions need an ordinal map"
    )]
    Sparse { position: u64, expected: u64 },
    #[error("the store's positions are not dense, and the tree's leaves are the log's positions")]
    NotDense,
}

async fn run(
    integrity: &Arc<Integrity>,
    store: &dyn EventStore,
    shutdown: &CancellationToken,
) -> Result<(), FollowError> {
    // Leaf `i` is the event at position `i`: only a store with dense positions can be followed.
    let dense = store.capabilities().dense_positions.ok_or(FollowError::NotDense)?;
    let size = integrity.size().get();
    // The tree saw events the log no longer has (a log cut back after a crash): cut it too.
    let log_len = store.head().await?.map_or(0, |p| dense.index(p) + 1);
    if log_len < size {
        warn!(tree_size = size, log_len, "the log is shorter than the integrity tree; cutting the tree back");
        integrity.tree.write().expect("tree lock").truncate(TreeSize::new(log_len))?;
    }
    let size = integrity.size().get();
    let from = if size == 0 { SubscribeFrom::Start } else { SubscribeFrom::After(dense.position(size - 1)) };
    let mut subscription = store.subscribe_to_all(from, EventFilter::all()).await?;
    subscription.pace(FOLLOW_PACE);
    let mut tags: std::collections::HashMap<String, [u8; 32]> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(SIGN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let grew = integrity.latest_head().is_none_or(|h| h.tree_size < integrity.size());
                if grew {
                    // A head not signed now is signed at the next tick or on demand.
                    if let Err(e) = integrity.sign_now() {
                        warn!(error = %e, "cannot sign a tree head");
                    }
                    let i = Arc::clone(integrity);
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || i.sync()).await {
                        warn!(error = %e, "cannot sync the integrity tree");
                    }
                }
            }
            message = subscription.next() => match message {
                Ok(SubscriptionMessage::Event(event)) => {
                    let namespace = leaf::namespace(event.stream.as_str());
                    let tag = match tags.get(namespace) {
                        Some(tag) => *tag,
                        None => {
                            if tags.len() >= FOLLOW_TAGS {
                                tags.clear();
                            }
                            *tags.entry(namespace.to_owned()).or_insert_with(|| integrity.tag(namespace))
                        }
                    };
                    let leaf = leaf::leaf(&tag, &leaf::event_bytes(&event));
                    let mut tree = integrity.tree.write().expect("tree lock");
                    let expected = tree.size().get();
                    if dense.index(event.position) != expected {
                        return Err(FollowError::Sparse { position: event.position.code(), expected });
                    }
                    tree.append_leaf(&leaf)?;
                }
                Ok(SubscriptionMessage::CaughtUp) => {}
                Err(StoreError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        }
    }
}

fn load_or_create_secret(path: &Path) -> Result<[u8; 32], IntegrityError> {
    let io = |source| IntegrityError::Io { path: path.into(), source };
    match fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| IntegrityError::KeyFile { path: path.into(), detail: "the secret is not 32 bytes".into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
            file.write_all(&secret).and_then(|()| file.sync_all()).map_err(io)?;
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

/// The heads file, read back; a torn last line (a crash mid-write) is skipped.
fn load_heads(path: &Path) -> BTreeMap<u64, SignedTreeHead> {
    let mut heads = BTreeMap::new();
    if let Ok(file) = fs::File::open(path) {
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(head) = serde_json::from_str::<SignedTreeHead>(&line) {
                heads.entry(head.tree_size.get()).or_insert(head);
            }
        }
    }
    heads
}

fn append_head(path: &Path, head: &SignedTreeHead) -> Result<(), IntegrityError> {
    let io = |source| IntegrityError::Io { path: path.into(), source };
    let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
    // The newline first: a line torn by a crash ends before this one starts (and is skipped).
    let mut line = vec![b'\n'];
    line.extend(serde_json::to_vec(head).expect("a head serializes"));
    // Durable before anyone is given the head: an export cut at it is resumed by its size.
    file.write_all(&line).and_then(|()| file.sync_data()).map_err(io)
}
