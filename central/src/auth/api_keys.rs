//! Personal API keys: `celaest_<43 base64url chars>` (256 random bits). The full key is shown
//! once, at creation; the database keeps its SHA-256 and a short visible prefix.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "celaest_";
/// Characters of a key kept for display (`celaest_` plus 8).
pub const VISIBLE_LEN: usize = 16;

/// A newly made key: the secret to hand over once, and what to store.
#[derive(Clone)]
pub struct NewKey {
    pub secret: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub fn generate() -> anyhow::Result<NewKey> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    Ok(NewKey {
        prefix: secret.chars().take(VISIBLE_LEN).collect(),
        hash: hash(&secret),
        secret,
    })
}

/// The lookup hash of a presented key.
pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Cheap shape check before any lookup.
pub fn looks_valid(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + 43
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_well_formed_and_hashed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(looks_valid(&a.secret), "{}", a.secret);
        assert_eq!(a.hash, hash(&a.secret));
        assert_eq!(a.prefix.len(), VISIBLE_LEN);
        assert!(a.secret.starts_with(&a.prefix));
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn malformed_keys_are_rejected_before_lookup() {
        assert!(!looks_valid("celaest_short"));
        assert!(!looks_valid(&format!("other___{}", "a".repeat(43))));
        assert!(!looks_valid(&format!("celaest_{}", "!".repeat(43))));
    }
}
