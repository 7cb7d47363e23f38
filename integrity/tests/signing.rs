//! Signed tree heads: what is signed (the documented byte layout), that every signed field is
//! covered, that keys derive as RFC 8032 says, and the key file's creation, permissions and export.

use std::os::unix::fs::PermissionsExt;

use annals_integrity::signing::{signed_message, SIGNED_LEN};
use annals_integrity::{
    Hash, IntegrityError, SignedTreeHead, Timestamp, TreeHead, TreeHeadSignature, TreePublicKey, TreeSigner, TreeSize,
};

fn head() -> TreeHead {
    TreeHead { tree_size: TreeSize::new(0x0102_0304_0506_0708), root_hash: Hash::leaf(b"root") }
}

#[test]
fn the_signed_bytes_are_the_documented_layout() {
    let ts = Timestamp::from_millis(0x1122_3344_5566_7788);
    let m = signed_message(head().tree_size, ts, &head().root_hash);
    let mut expected = b"annals-tree-head".to_vec();
    expected.push(1);
    expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    expected.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    expected.extend_from_slice(head().root_hash.as_bytes());
    assert_eq!(m.len(), SIGNED_LEN);
    assert_eq!(m.to_vec(), expected);
}

#[test]
fn keys_derive_from_a_raw_seed_as_rfc_8032_says() {
    // RFC 8032 §7.1, TEST 1.
    let seed: [u8; 32] = Hash::from_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        .unwrap()
        .as_bytes()
        .to_owned();
    let public = TreeSigner::from_seed(seed).public_key();
    assert_eq!(
        Hash::from_bytes(*public.as_bytes()).to_hex(),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
}

#[test]
fn a_signed_head_verifies_and_every_signed_field_is_covered() {
    let signer = TreeSigner::generate();
    let public = signer.public_key();
    let sth = signer.sign(&head(), Timestamp::from_millis(1_765_000_000_123));
    assert_eq!(public.verify(&sth).unwrap(), head());

    let json = serde_json::to_string(&sth).unwrap();
    assert!(json.contains(r#""timestamp":"2025-12-06T05:46:40.123Z""#), "{json}");
    let back: SignedTreeHead = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sth);
    public.verify(&back).unwrap();

    let mut forgeries = vec![
        SignedTreeHead { tree_size: TreeSize::new(sth.tree_size.get() + 1), ..sth },
        SignedTreeHead { tree_size: TreeSize::new(sth.tree_size.get() - 1), ..sth },
        SignedTreeHead { timestamp: Timestamp::from_millis(sth.timestamp.as_millis() + 1), ..sth },
    ];
    for bit in 0..256 {
        let mut b = *sth.root_hash.as_bytes();
        b[bit / 8] ^= 1 << (bit % 8);
        forgeries.push(SignedTreeHead { root_hash: Hash::from_bytes(b), ..sth });
    }
    for bit in 0..512 {
        let mut s = *sth.signature.as_bytes();
        s[bit / 8] ^= 1 << (bit % 8);
        forgeries.push(SignedTreeHead { signature: TreeHeadSignature::from_bytes(s), ..sth });
    }
    for forged in forgeries {
        assert!(matches!(public.verify(&forged), Err(IntegrityError::BadSignature { .. })), "{forged:?}");
    }
    let other = TreeSigner::generate().public_key();
    assert!(matches!(other.verify(&sth), Err(IntegrityError::BadSignature { .. })));
}

#[test]
fn the_key_file_is_created_once_private_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree-head.key");
    let created = TreeSigner::load_or_create(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let loaded = TreeSigner::load_or_create(&path).unwrap();
    assert_eq!(loaded.public_key(), created.public_key());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
    assert!(created.create(&path).is_err(), "an existing key is never replaced");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = TreeSigner::load(&path).unwrap_err();
    assert!(matches!(err, IntegrityError::KeyFile { .. }), "{err}");
    assert!(err.to_string().contains("644"), "{err}");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, [7u8; 31]).unwrap();
    assert!(matches!(TreeSigner::load(&path), Err(IntegrityError::KeyFile { .. })));
}

#[test]
fn the_public_key_exports_as_pem_and_base64_and_parses_back() {
    let public = TreeSigner::from_seed([42; 32]).public_key();
    let pem = public.to_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"), "{pem}");
    assert_eq!(TreePublicKey::parse(&pem).unwrap(), public);
    assert_eq!(TreePublicKey::parse(&public.to_base64()).unwrap(), public);
    assert_eq!(public.key_id().len(), 64);
    for bad in ["", "not base64!", "AAAA", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"] {
        assert!(matches!(TreePublicKey::parse(bad), Err(IntegrityError::Format { .. })), "{bad:?}");
    }
}
