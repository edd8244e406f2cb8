//! Password verification with bounded memory (CONTRACT 1.2 §8: "password hashing runs with
//! bounded concurrency"). Argon2 takes ~19 MiB per verification: at most
//! `console.hashing_concurrency` run at once, off the async threads, each in one of that many
//! memory areas allocated once and reused. Freed areas are not left to the allocator, which
//! keeps per-thread arenas: measured, 64 concurrent logins reached 1.2 GiB with argon2's own
//! allocation per verification, and 0.5 GiB with the concurrency bounded but the allocation
//! not; with these areas the peak is the areas themselves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

/// How long a login waits for a verification slot.
const WAIT: Duration = Duration::from_secs(10);

/// Every verification slot stayed busy for [`WAIT`].
#[derive(Debug)]
pub(crate) struct Busy;

/// The console's password verifications.
pub(crate) struct Hashing {
    permits: Arc<Semaphore>,
    areas: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl Hashing {
    pub(crate) fn new(concurrency: usize) -> Self {
        let n = concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(n)),
            areas: Arc::new(Mutex::new((0..n).map(|_| Vec::new()).collect())),
        }
    }

    /// Whether `password` matches the argon2 `hash` (PHC form).
    pub(crate) async fn verify(&self, password: String, hash: String) -> Result<bool, Busy> {
        let permit = tokio::time::timeout(WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let areas = self.areas.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // One area per permit: there is always one free while the permit is held.
            let mut area = areas
                .lock()
                .ok()
                .and_then(|mut a| a.pop())
                .unwrap_or_default();
            let ok = verify_in(password.as_bytes(), &hash, &mut area);
            if let Ok(mut a) = areas.lock() {
                a.push(area);
            }
            ok
        })
        .await
        .unwrap_or(false);
        Ok(verified)
    }
}

/// Verifies `password` against `hash` using `area` as argon2's memory.
pub(crate) fn verify_in(password: &[u8], hash: &str, area: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > crate::users::MAX_MEMORY_KIB {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    area.resize(params.block_count(), Block::default());
    let expected = expected.as_bytes();
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        area.as_mut_slice(),
    );
    computed.is_ok()
        && out.len() == expected.len()
        && out
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_in_a_reused_area() {
        let hash = crate::hash_password("una password lunga").expect("hash");
        let mut area = Vec::new();
        assert!(verify_in(b"una password lunga", &hash, &mut area));
        assert_eq!(area.len(), 19_456, "one block per KiB of m");
        let capacity = area.capacity();
        assert!(!verify_in(b"un'altra password", &hash, &mut area));
        assert_eq!(area.capacity(), capacity, "reused, not reallocated");
        assert!(!verify_in(
            b"x",
            "$argon2id$v=19$m=19456,t=2,p=1$bad",
            &mut area
        ));
        assert!(!verify_in(b"x", "not a hash", &mut area));
    }

    #[tokio::test]
    async fn verifications_wait_for_a_slot_and_all_complete() {
        let hashing = Arc::new(Hashing::new(2));
        let hash = crate::hash_password("pw-lunga").expect("hash");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let (hashing, hash) = (hashing.clone(), hash.clone());
                tokio::spawn(async move {
                    let pw = if i % 2 == 0 { "pw-lunga" } else { "altra" };
                    hashing.verify(pw.to_owned(), hash).await.ok()
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("joined"));
        }
        assert_eq!(
            results,
            [true, false, true, false, true, false].map(Some).to_vec()
        );
        assert_eq!(hashing.areas.lock().expect("lock").len(), 2);
    }
}
