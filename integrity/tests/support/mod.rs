//! An independent, naive implementation of RFC 9162 §2.1 straight from the RFC's recursive
//! definitions, over raw leaf bytes and a SHA-256 of its own: the reference the tree is checked
//! against. Slow on purpose (O(n) per root); never used by the crate.
#![allow(dead_code)]

use sha2::{Digest, Sha256};

pub type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut s = Sha256::new();
    for p in parts {
        s.update(p);
    }
    s.finalize().into()
}

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
pub fn mth(d: &[Vec<u8>]) -> H {
    match d.len() {
        0 => sha(&[]),
        1 => sha(&[&[0], &d[0]]),
        n => {
            let k = k_of(n);
            sha(&[&[1], &mth(&d[..k]), &mth(&d[k..])])
        }
    }
}

/// PATH(m, D[n]).
pub fn path(m: usize, d: &[Vec<u8>]) -> Vec<H> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
pub fn proof(m: usize, d: &[Vec<u8>]) -> Vec<H> {
    subproof(m, d, true)
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<H> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]) extended to m = 0 (empty: the empty tree is a prefix of every tree).
pub fn proof_or_empty(m: usize, d: &[Vec<u8>]) -> Vec<H> {
    if m == 0 {
        vec![]
    } else {
        proof(m, d)
    }
}

/// The hashes of the subtrees of D[n] disjoint from leaves [a, b) whose parent is not, left to
/// right: the range proof, straight from the recursion.
pub fn range_path(a: usize, b: usize, d: &[Vec<u8>]) -> Vec<H> {
    fn go(lo: usize, d: &[Vec<u8>], a: usize, b: usize, out: &mut Vec<H>) {
        let hi = lo + d.len();
        if a <= lo && hi <= b {
            return;
        }
        if hi <= a || b <= lo {
            out.push(mth(d));
            return;
        }
        let k = k_of(d.len());
        go(lo, &d[..k], a, b, out);
        go(lo + k, &d[k..], a, b, out);
    }
    let mut out = Vec::new();
    go(0, d, a, b, &mut out);
    out
}
