//! Ed25519 signatures checked many at a time: the registry pass of `faceaudit check`
//! verifies thousands of signed records before it judges an event.
//!
//! Each signature is verified on its own, as RFC 8032 and `cryptography`'s
//! `Ed25519PublicKey.verify` do (cofactorless, `s` canonical), not as a batch
//! equation, which would accept a few signatures that check alone refuses.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

/// One signature to check: the signer's public key, the bytes signed, the signature.
pub struct Signed<'a> {
    pub key: &'a [u8],
    pub message: &'a [u8],
    pub signature: &'a [u8],
}

/// Below this many signatures a thread more costs more than it saves.
const PER_THREAD: usize = 64;
const MAX_THREADS: usize = 4;

/// Whether each signature verifies under its key; false also for a key that is not
/// 32 bytes or not a point, or a signature that is not 64 bytes.
pub fn verify_all(items: &[Signed]) -> Vec<bool> {
    let mut keys: HashMap<&[u8], Option<VerifyingKey>> = HashMap::new();
    for item in items {
        keys.entry(item.key).or_insert_with(|| public_key(item.key));
    }
    let mut verdicts = vec![false; items.len()];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let part = if items.len() < PER_THREAD * 2 {
        items.len().max(1)
    } else {
        items.len().div_ceil(threads)
    };
    let mut parts = items.chunks(part).zip(verdicts.chunks_mut(part));
    let own = parts.next();
    let keys = &keys;
    std::thread::scope(|scope| {
        for (items, out) in parts {
            scope.spawn(move || verify_part(keys, items, out));
        }
        if let Some((items, out)) = own {
            verify_part(keys, items, out);
        }
    });
    verdicts
}

fn verify_part(keys: &HashMap<&[u8], Option<VerifyingKey>>, items: &[Signed], out: &mut [bool]) {
    for (item, verdict) in items.iter().zip(out) {
        *verdict = keys[item.key].is_some_and(|key| verifies(&key, item));
    }
}

fn public_key(bytes: &[u8]) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(bytes.try_into().ok()?).ok()
}

fn verifies(key: &VerifyingKey, item: &Signed) -> bool {
    Signature::from_slice(item.signature)
        .is_ok_and(|signature| key.verify(item.message, &signature).is_ok())
}
