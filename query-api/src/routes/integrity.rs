//! The integrity routes: the log's public key, signed tree heads, and inclusion and consistency
//! proofs over the Merkle tree of `$all` (`crate::integrity`). Any reader or admin key of any
//! tenant may call them; an inclusion proof is given only for a position of the caller's own
//! tenant — another tenant's position is a `404` exactly like a position that does not exist.

use annals_integrity::{IntegrityError, LeafIndex, SignedTreeHead, TreeSize};
use annals_store::{Direction, EventFilter, ReadFrom};
use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::params::QueryParams;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// The log's Ed25519 public key, which verifies every signed tree head.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    /// Hex SHA-256 of the raw key bytes.
    pub key_id: String,
    /// Base64 of the raw 32 key bytes (what `annals verify --public-key` reads, as is PEM).
    pub public_key: String,
    /// PEM `PUBLIC KEY` (RFC 8410).
    pub pem: String,
}

/// A signed tree head: the Merkle Tree Hash of the first `tree_size` events of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct TreeHeadBody {
    pub tree_size: u64,
    /// Hex SHA-256.
    pub root_hash: String,
    /// When it was signed (RFC 3339).
    pub timestamp: String,
    /// Base64 Ed25519 signature over `annals-tree-head ‖ 0x01 ‖ tree_size u64 BE ‖ timestamp ms i64 BE ‖ root_hash`.
    pub signature: String,
}

fn head_body(head: &SignedTreeHead) -> Json<serde_json::Value> {
    Json(serde_json::to_value(head).expect("a head serializes"))
}

/// An RFC 9162 inclusion proof of one event, with what the leaf is made of.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionBody {
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Hex hashes, the leaf's sibling first.
    pub inclusion_path: Vec<String>,
    /// The tenant's tag (hex): the leaf is `tag ‖ SHA-256(event_bytes)`.
    pub tag: String,
    /// Base64 of the event's canonical bytes.
    pub event_bytes: String,
}

/// An RFC 9162 consistency proof between two tree sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyBody {
    pub from_size: u64,
    pub to_size: u64,
    /// Hex hashes, in the order of RFC 9162's SUBPROOF.
    pub consistency_path: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HeadParams {
    /// `true` signs the tree as it is now rather than returning the latest periodic head.
    fresh: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionParams {
    /// The event's log position (its leaf index); an event of the caller's tenant.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    #[param(required = true)]
    position: Option<u64>,
    /// The tree size to prove inclusion in (default: the latest signed head's).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    tree_size: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The older tree size.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    #[param(required = true)]
    from_size: Option<u64>,
    /// The newer tree size (default: the latest signed head's).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    to_size: Option<u64>,
}

/// A tree error as a problem: a size beyond the tree names `parameter`.
pub(crate) fn tree_error(e: IntegrityError, parameter: &'static str) -> ApiError {
    match e {
        IntegrityError::SizeBeyondTree { .. } | IntegrityError::SizesOutOfOrder { .. } => {
            ApiError::InvalidParameter { parameter, detail: e.to_string() }
        }
        other => ApiError::Integrity(other.to_string()),
    }
}

/// `tree_size`, or the latest signed head's; a size beyond the tree is a `400`.
pub(crate) fn size_param(state: &AppState, given: Option<u64>, parameter: &'static str) -> Result<TreeSize, ApiError> {
    let size = match given {
        Some(n) => TreeSize::new(n),
        None => state.integrity.current_head().map_err(|e| ApiError::Integrity(e.to_string()))?.tree_size,
    };
    let available = state.integrity.size();
    if size > available {
        return Err(ApiError::InvalidParameter {
            parameter,
            detail: format!("tree size {size} is beyond the {available} events the tree holds"),
        });
    }
    Ok(size)
}

/// `GET /v1/integrity/public-key`.
#[utoipa::path(
    get,
    operation_id = "integrity_public_key",
    path = "/v1/integrity/public-key",
    tag = "integrity",
    description = "The log's Ed25519 public key: what verifies signed tree heads and exports offline.",
    responses(
        (status = 200, description = "The public key", body = PublicKey),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Stopping", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn public_key(State(state): State<AppState>, principal: Principal) -> Result<Json<PublicKey>, ApiError> {
    principal.require(Action::Read)?;
    let key = state.integrity.public_key();
    Ok(Json(PublicKey { key_id: key.key_id(), public_key: key.to_base64(), pem: key.to_pem() }))
}

/// `GET /v1/integrity/head`.
#[utoipa::path(
    get,
    operation_id = "integrity_head",
    path = "/v1/integrity/head",
    tag = "integrity",
    description = "The latest signed tree head (signed every 10 s while the log grows), or with `fresh=true` one signed now.",
    params(HeadParams),
    responses(
        (status = 200, description = "A signed tree head", body = TreeHeadBody),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tree cannot answer, or stopping", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn head(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<QueryParams<HeadParams>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    let head = if p.fresh == Some(true) { state.integrity.sign_now() } else { state.integrity.current_head() };
    Ok(head_body(&head.map_err(|e| ApiError::Integrity(e.to_string()))?))
}

/// `GET /v1/integrity/proof/inclusion`.
#[utoipa::path(
    get,
    operation_id = "integrity_inclusion_proof",
    path = "/v1/integrity/proof/inclusion",
    tag = "integrity",
    description = "The RFC 9162 inclusion proof of the event at `position` (one of the caller's tenant) in the tree of `tree_size` events, with the event's canonical bytes and its tenant's tag. Another tenant's position is a 404 like one that does not exist.",
    params(InclusionParams),
    responses(
        (status = 200, description = "The proof", body = InclusionBody),
        (status = 400, description = "An invalid parameter (a tree size beyond the tree, a position outside it)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No event of the caller's tenant at that position", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tree cannot answer, or stopping", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn inclusion(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<QueryParams<InclusionParams>, ApiError>,
) -> Result<Json<InclusionBody>, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    let position = p
        .position
        .ok_or_else(|| ApiError::InvalidParameter { parameter: "position", detail: "position is required".into() })?;
    let size = size_param(&state, p.tree_size, "tree_size")?;
    let not_found = || ApiError::DocumentNotFound { kind: "position", id: position.to_string() };
    // Leaf `position` is the event at that dense position (the tree follows only such stores).
    let dense = state
        .store
        .capabilities()
        .dense_positions
        .ok_or_else(|| ApiError::Integrity("the integrity log needs a store with dense positions".into()))?;
    let events = state
        .store
        .read_all(ReadFrom::At(dense.position(position)), Direction::Forwards, 1, &EventFilter::all())
        .await?;
    let event = events
        .into_iter()
        .next()
        .filter(|e| dense.index(e.position) == position && e.stream.as_str().starts_with(&principal.tenant.prefix()))
        .ok_or_else(not_found)?;
    if !size.contains(LeafIndex::new(position)) {
        return Err(ApiError::InvalidParameter {
            parameter: "tree_size",
            detail: format!("position {position} is not in the tree of size {size}"),
        });
    }
    let proof =
        state.integrity.inclusion_proof(LeafIndex::new(position), size).map_err(|e| tree_error(e, "tree_size"))?;
    let (bytes, _) = state.integrity.leaf_of(&event);
    Ok(Json(InclusionBody {
        leaf_index: position,
        tree_size: size.get(),
        inclusion_path: proof.inclusion_path.iter().map(|h| h.to_hex()).collect(),
        tag: hex(&state.integrity.tag(principal.tenant.as_str())),
        event_bytes: base64::engine::general_purpose::STANDARD.encode(bytes),
    }))
}

/// `GET /v1/integrity/proof/consistency`.
#[utoipa::path(
    get,
    operation_id = "integrity_consistency_proof",
    path = "/v1/integrity/proof/consistency",
    tag = "integrity",
    description = "The RFC 9162 consistency proof that the tree of `from_size` events is a prefix of the tree of `to_size` events (default: the latest signed head's size).",
    params(ConsistencyParams),
    responses(
        (status = 200, description = "The proof", body = ConsistencyBody),
        (status = 400, description = "An invalid parameter (`to_size` beyond the tree, `from_size` above `to_size`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tree cannot answer, or stopping", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn consistency(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<QueryParams<ConsistencyParams>, ApiError>,
) -> Result<Json<ConsistencyBody>, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    let from = p
        .from_size
        .ok_or_else(|| ApiError::InvalidParameter { parameter: "from_size", detail: "from_size is required".into() })?;
    let to = size_param(&state, p.to_size, "to_size")?;
    if from > to.get() {
        return Err(ApiError::InvalidParameter {
            parameter: "from_size",
            detail: format!("from_size {from} is larger than to_size {to}"),
        });
    }
    let proof = state.integrity.consistency_proof(TreeSize::new(from), to).map_err(|e| tree_error(e, "from_size"))?;
    Ok(Json(ConsistencyBody {
        from_size: from,
        to_size: to.get(),
        consistency_path: proof.consistency_path.iter().map(|h| h.to_hex()).collect(),
    }))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
