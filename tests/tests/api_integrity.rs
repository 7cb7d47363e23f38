//! The integrity routes over HTTP: signed heads verify with the served public key, inclusion and
//! consistency proofs verify with `annals_integrity::verify` against them, another tenant's
//! position is a 404 like a missing one, and bad sizes are problems naming the parameter.

use crate::support;

use annals_integrity::{
    verify_consistency, verify_inclusion, ConsistencyProof, Hash, InclusionProof, LeafIndex, SignedTreeHead,
    TreePublicKey, TreeSize,
};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{event, TestApp};

async fn append(app: &TestApp, stream: &str, kind: &str, n: u64) -> u64 {
    let (status, body) =
        app.post(&format!("/v1/streams/{stream}/events"), &json!({ "events": [event(kind, n)] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["last_position"].as_u64().unwrap()
}

/// A fresh head once the tree has been fed up to `position` (it follows the log asynchronously).
async fn head_covering(app: &TestApp, position: u64) -> SignedTreeHead {
    for _ in 0..200 {
        let (status, body) = app.get("/v1/integrity/head?fresh=true").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let head: SignedTreeHead = serde_json::from_value(body).unwrap();
        if head.tree_size.get() > position {
            return head;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the tree never reached position {position}");
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(|h| h.as_str().unwrap().parse().unwrap()).collect()
}

#[tokio::test]
async fn heads_and_proofs_verify_with_the_public_key() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let other = app.with_key(&app.tenant_admin_key("globex").await);
    let (status, key) = app.get("/v1/integrity/public-key").await;
    assert_eq!(status, StatusCode::OK, "{key}");
    let public = TreePublicKey::parse(key["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(TreePublicKey::parse(key["pem"].as_str().unwrap()).unwrap(), public);

    let mine = append(&app, "audit-1", "audit.recorded", 1).await;
    let theirs = append(&other, "audit-9", "audit.recorded", 9).await;
    let first = head_covering(&app, theirs).await;
    public.verify(&first).expect("the head's signature verifies");
    let mut tampered = first;
    tampered.tree_size = TreeSize::new(first.tree_size.get() + 1);
    assert!(public.verify(&tampered).is_err(), "a changed size breaks the signature");

    // Inclusion of the caller's own event, in the signed head's tree.
    let (status, proof) =
        app.get(&format!("/v1/integrity/proof/inclusion?position={mine}&tree_size={}", first.tree_size)).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(proof["event_bytes"].as_str().unwrap()).unwrap();
    let mut leaf = hex_bytes(proof["tag"].as_str().unwrap());
    leaf.extend_from_slice(&Sha256::digest(&bytes));
    let inclusion = InclusionProof {
        leaf_index: LeafIndex::new(mine),
        tree_size: first.tree_size,
        inclusion_path: hashes(&proof["inclusion_path"]),
    };
    verify_inclusion(&Hash::leaf(&leaf), &inclusion, &first.head()).expect("the inclusion proof verifies");
    let mut flipped = leaf.clone();
    flipped[40] ^= 1;
    assert!(verify_inclusion(&Hash::leaf(&flipped), &inclusion, &first.head()).is_err());

    // Another tenant's position is a 404 exactly like a position that does not exist.
    let (status, foreign) = app.get(&format!("/v1/integrity/proof/inclusion?position={theirs}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{foreign}");
    let (status, missing) = app.get("/v1/integrity/proof/inclusion?position=1000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("detail");
        v.as_object_mut().unwrap().remove("instance");
        v.as_object_mut().unwrap().remove("position");
        v
    };
    assert_eq!(strip(foreign), strip(missing), "no oracle for other tenants' positions");

    // Consistency between two signed heads.
    let later = append(&app, "audit-2", "audit.recorded", 2).await;
    let second = head_covering(&app, later).await;
    public.verify(&second).unwrap();
    let (status, body) = app
        .get(&format!("/v1/integrity/proof/consistency?from_size={}&to_size={}", first.tree_size, second.tree_size))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let proof = ConsistencyProof {
        from_size: first.tree_size,
        to_size: second.tree_size,
        consistency_path: hashes(&body["consistency_path"]),
    };
    verify_consistency(&proof, &first.head(), &second.head()).expect("the consistency proof verifies");

    // Bad sizes name their parameter.
    let beyond = second.tree_size.get() + 100;
    for (query, parameter) in [
        (format!("from_size=1&to_size={beyond}"), "to_size"),
        (format!("from_size={}&to_size=1", second.tree_size), "from_size"),
        ("to_size=1".to_owned(), "from_size"),
    ] {
        let (status, problem) = app.get(&format!("/v1/integrity/proof/consistency?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(problem["parameter"], json!(parameter), "{query}: {problem}");
    }
    let (status, problem) = app.get(&format!("/v1/integrity/proof/inclusion?position={mine}&tree_size={beyond}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["parameter"], json!("tree_size"));

    // Heads survive a restart, and the tree is the same tree.
    let app = app.restart().await;
    let (_, body) = app.get("/v1/integrity/head").await;
    let after: SignedTreeHead = serde_json::from_value(body).unwrap();
    assert!(after.tree_size >= second.tree_size);
    public.verify(&after).expect("the key survives a restart");
    let (status, body) = app
        .get(&format!("/v1/integrity/proof/consistency?from_size={}&to_size={}", second.tree_size, after.tree_size))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}
