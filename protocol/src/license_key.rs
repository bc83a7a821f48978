//! The license-key format, `CELAEST-{PRODUCT_CODE}-{RANDOM_8}-{CHECKSUM_4}`, its checksum, and
//! the hash under which a key is stored and looked up.
//!
//! A key is made by central and checked by whoever answers a validation. The checksum is an HMAC
//! keyed by a server secret, so a forged or mistyped key is refused before any lookup. Nothing
//! here prints a whole key: `Display` and `Debug` redact it, and [`LicenseKey::as_str`] is the one
//! deliberate way out (to store it at creation and show it once to its owner).
//!
//! The canonical text matches the database CHECK
//! `^CELAEST-[A-Z0-9]{2,10}-[0-9A-F]{8}-[0-9A-Z]{4}$` exactly.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use ring::rand::SecureRandom;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::hex;

const PREFIX: &str = "CELAEST-";
/// Longest canonical key: prefix (8) + code (10) + `-` + random (8) + `-` + checksum (4).
const MAX_KEY_LEN: usize = PREFIX.len() + ProductCode::MAX_LEN + 1 + 8 + 1 + 4;
/// Checksum digits: `[0-9A-Z]`, as the database CHECK allows.
const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// 36⁴, the number of distinct checksums.
const CHECKSUM_SPACE: u64 = 36 * 36 * 36 * 36;

/// Why a presented license key was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not of the shape `CELAEST-{CODE}-{RANDOM_8}-{CHECKSUM_4}`.
    Malformed,
    /// Well-shaped, but the checksum is not the one this server would have made: mistyped or forged.
    ChecksumMismatch,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::Malformed => "license key is not of the form CELAEST-CODE-XXXXXXXX-XXXX",
            KeyError::ChecksumMismatch => "license key checksum does not match",
        })
    }
}

impl std::error::Error for KeyError {}

/// A product's code inside its license keys: 2–10 characters of `[A-Z0-9]`.
///
/// Stored inline (11 bytes, `Copy`) because every license an edge holds in memory carries one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductCode {
    len: u8,
    bytes: [u8; ProductCode::MAX_LEN],
}

/// A product code that is not 2–10 characters of `[A-Z0-9]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidProductCode;

impl fmt::Display for InvalidProductCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("product code must be 2 to 10 characters of A-Z and 0-9")
    }
}

impl std::error::Error for InvalidProductCode {}

impl ProductCode {
    /// Shortest code allowed.
    pub const MIN_LEN: usize = 2;
    /// Longest code allowed.
    pub const MAX_LEN: usize = 10;

    /// Accepts exactly `[A-Z0-9]{2,10}` (the products table's CHECK); no trimming or case folding,
    /// so what is stored is what was given.
    pub fn parse(raw: &str) -> Result<Self, InvalidProductCode> {
        let src = raw.as_bytes();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&src.len())
            || !src
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(InvalidProductCode);
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..src.len()].copy_from_slice(src);
        Ok(Self {
            // At most MAX_LEN (10), checked above.
            len: src.len() as u8,
            bytes,
        })
    }

    /// The code as text, e.g. `MKT`.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this cannot fail; an empty string would be the fallback.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for ProductCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ProductCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProductCode({})", self.as_str())
    }
}

impl FromStr for ProductCode {
    type Err = InvalidProductCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ProductCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProductCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The server secret the checksum of every license key is keyed with.
///
/// Central makes keys with it and every validator checks them with it, so it is the same
/// everywhere and cannot be rotated without invalidating every key ever issued. Its bytes are
/// never printed.
#[derive(Clone)]
pub struct ChecksumKey {
    // The keyed HMAC state, cloned per checksum: the key is hashed once, not on every validation.
    mac: Hmac<Sha256>,
}

/// A checksum secret shorter than [`ChecksumKey::MIN_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumKeyTooShort;

impl fmt::Display for ChecksumKeyTooShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the license checksum secret must be at least {} bytes",
            ChecksumKey::MIN_LEN
        )
    }
}

impl std::error::Error for ChecksumKeyTooShort {}

impl ChecksumKey {
    /// Fewest secret bytes accepted: as many as the HMAC-SHA256 output, so the secret is never the
    /// weak link.
    pub const MIN_LEN: usize = 32;

    /// Wraps the secret; refuses one shorter than [`Self::MIN_LEN`].
    pub fn new(secret: &[u8]) -> Result<Self, ChecksumKeyTooShort> {
        if secret.len() < Self::MIN_LEN {
            return Err(ChecksumKeyTooShort);
        }
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| ChecksumKeyTooShort)?;
        Ok(Self { mac })
    }

    /// The four checksum characters of `body` (`CELAEST-{CODE}-{RANDOM}`): the first eight bytes of
    /// HMAC-SHA256(secret, body), big-endian, reduced modulo 36⁴ and written as four base-36
    /// digits, most significant first. The modulo bias is below 10⁻¹³.
    fn checksum(&self, body: &str) -> [u8; 4] {
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag[..8]);
        let mut n = u64::from_be_bytes(first) % CHECKSUM_SPACE;
        let mut out = [b'0'; 4];
        for digit in out.iter_mut().rev() {
            // n % 36 < 36, always a valid index.
            *digit = BASE36[(n % 36) as usize];
            n /= 36;
        }
        out
    }
}

impl fmt::Debug for ChecksumKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChecksumKey(<redacted>)")
    }
}

/// A well-formed license key whose checksum has been verified (or which this server just made).
///
/// Holds the canonical (uppercase, trimmed) text. Equality is constant-time.
#[derive(Clone)]
pub struct LicenseKey {
    text: String,
    code: ProductCode,
}

impl LicenseKey {
    /// Makes a new key for `code`: eight uppercase hex digits from `rng` (four random bytes) and
    /// the checksum under `secret`.
    ///
    /// Thirty-two random bits per product code is the spec's format, so two keys can coincide;
    /// the database's unique constraint is the arbiter and the caller makes a new key on a clash.
    pub fn generate(
        code: &ProductCode,
        secret: &ChecksumKey,
        rng: &dyn SecureRandom,
    ) -> Result<Self, ring::error::Unspecified> {
        let mut random = [0u8; 4];
        rng.fill(&mut random)?;
        Ok(Self::assemble(*code, random, secret))
    }

    fn assemble(code: ProductCode, random: [u8; 4], secret: &ChecksumKey) -> Self {
        let mut text = String::with_capacity(MAX_KEY_LEN);
        text.push_str(PREFIX);
        text.push_str(code.as_str());
        text.push('-');
        text.push_str(&hex::encode(&random).to_ascii_uppercase());
        let checksum = secret.checksum(&text);
        text.push('-');
        text.extend(checksum.iter().map(|&b| char::from(b)));
        Self { text, code }
    }

    /// Reads a key as a client presents it: surrounding whitespace is ignored and lowercase is
    /// accepted, then the shape is checked and the checksum verified in constant time.
    pub fn parse(raw: &str, secret: &ChecksumKey) -> Result<Self, KeyError> {
        let raw = raw.trim();
        // Bounded before anything is allocated for it.
        if raw.len() > MAX_KEY_LEN {
            return Err(KeyError::Malformed);
        }
        let text = raw.to_ascii_uppercase();
        let (body, checksum) = text.rsplit_once('-').ok_or(KeyError::Malformed)?;
        let (code, random) = body
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .ok_or(KeyError::Malformed)?;
        let code = ProductCode::parse(code).map_err(|_| KeyError::Malformed)?;
        let random_ok = random.len() == 8
            && random
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        let checksum_ok = checksum.len() == 4
            && checksum
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if !random_ok || !checksum_ok {
            return Err(KeyError::Malformed);
        }
        let expected = secret.checksum(body);
        if !bool::from(expected.ct_eq(checksum.as_bytes())) {
            return Err(KeyError::ChecksumMismatch);
        }
        Ok(Self { text, code })
    }

    /// The whole key. Only for storing it when it is made and showing it once to its owner:
    /// never log it (use [`LicenseKey::hash`] or the redacted `Display`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The product code inside the key.
    pub fn product_code(&self) -> ProductCode {
        self.code
    }

    /// SHA-256 of the canonical key: what the database indexes and what edges hold.
    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.text.as_bytes()).into())
    }
}

/// `CELAEST-MKT-A8F9****-****`: enough to recognise a key in support, not to use it. For stored
/// key text as well as parsed keys (whose `Display` is this); anything that is not four
/// dash-separated parts is hidden whole.
pub fn redact(key: &str) -> String {
    let parts: Vec<&str> = key.split('-').collect();
    match parts.as_slice() {
        [brand, code, random, _] => format!(
            "{brand}-{code}-{}****-****",
            random.get(..4).unwrap_or_default()
        ),
        _ => "****".into(),
    }
}

impl PartialEq for LicenseKey {
    fn eq(&self, other: &Self) -> bool {
        self.text.as_bytes().ct_eq(other.text.as_bytes()).into()
    }
}

impl Eq for LicenseKey {}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.text))
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseKey({})", redact(&self.text))
    }
}

/// SHA-256 of a canonical license key (32 bytes): the lookup key in the database and at the edges.
///
/// Text (JSON) carries it as 64 lowercase hex digits; compact binary formats (postcard) as the
/// 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Wraps a hash read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Wraps a hash read as a byte string (a `bytea` column); `None` unless it is 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

/// Text that is not 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidKeyHash;

impl fmt::Display for InvalidKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key hash is 64 hex digits")
    }
}

impl std::error::Error for InvalidKeyHash {}

impl FromStr for KeyHash {
    type Err = InvalidKeyHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hex::decode::<32>(s).map(Self).ok_or(InvalidKeyHash)
    }
}

impl Serialize for KeyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_string())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            raw.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    fn secret() -> ChecksumKey {
        ChecksumKey::new(b"celaest-test-checksum-secret-0123456789").unwrap()
    }

    fn mkt() -> ProductCode {
        ProductCode::parse("MKT").unwrap()
    }

    /// The database CHECK on `licenses.license_key`, verbatim.
    fn matches_database_check(key: &str) -> bool {
        regex::Regex::new("^CELAEST-[A-Z0-9]{2,10}-[0-9A-F]{8}-[0-9A-Z]{4}$")
            .unwrap()
            .is_match(key)
    }

    #[test]
    fn product_codes_are_two_to_ten_uppercase_letters_or_digits() {
        for ok in ["MK", "MKT", "A1", "0123456789"] {
            assert_eq!(ProductCode::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "M", "01234567890", "mkt", "MK-T", "MK T", "MKÑ", " MKT"] {
            assert_eq!(ProductCode::parse(bad), Err(InvalidProductCode), "{bad:?}");
        }
    }

    #[test]
    fn generated_keys_match_the_database_check_and_parse_back() {
        let rng = SystemRandom::new();
        for code in ["MK", "MKT", "0123456789"] {
            let code = ProductCode::parse(code).unwrap();
            for _ in 0..200 {
                let key = LicenseKey::generate(&code, &secret(), &rng).unwrap();
                assert!(matches_database_check(key.as_str()), "{}", key.as_str());
                assert_eq!(key.product_code(), code);
                assert_eq!(LicenseKey::parse(key.as_str(), &secret()), Ok(key));
            }
        }
    }

    #[test]
    fn generation_takes_its_randomness_from_the_given_source() {
        #[expect(
            deprecated,
            reason = "ring's only deterministic SecureRandom, for tests"
        )]
        let rng = ring::test::rand::FixedSliceRandom {
            bytes: &[0xA8, 0xF9, 0xD2, 0xE1],
        };
        let key = LicenseKey::generate(&mkt(), &secret(), &rng).unwrap();
        assert!(key.as_str().starts_with("CELAEST-MKT-A8F9D2E1-"));
    }

    #[test]
    fn the_checksum_is_base36_of_the_first_eight_hmac_bytes() {
        // Known answer computed independently (Python hmac/hashlib) for this secret and body.
        let key = LicenseKey::assemble(mkt(), [0xA8, 0xF9, 0xD2, 0xE1], &secret());
        assert_eq!(key.as_str(), "CELAEST-MKT-A8F9D2E1-F6S6");
    }

    #[test]
    fn parsing_ignores_surrounding_whitespace_and_case() {
        let key = LicenseKey::assemble(mkt(), [0xA8, 0xF9, 0xD2, 0xE1], &secret());
        let sloppy = format!("  {}\n", key.as_str().to_ascii_lowercase());
        let parsed = LicenseKey::parse(&sloppy, &secret()).unwrap();
        assert_eq!(parsed.as_str(), key.as_str());
        assert_eq!(parsed.hash(), key.hash());
    }

    #[test]
    fn a_mistyped_or_forged_checksum_is_refused() {
        let key = LicenseKey::assemble(mkt(), [0xA8, 0xF9, 0xD2, 0xE1], &secret());
        let text = key.as_str();
        // Change one character of the random part, then of the checksum.
        let typo_random = text.replacen("A8F9", "A8F8", 1);
        let (body, checksum) = text.rsplit_once('-').unwrap();
        let other = if checksum.starts_with('0') { '1' } else { '0' };
        let typo_checksum = format!("{body}-{other}{}", &checksum[1..]);
        for bad in [typo_random, typo_checksum] {
            assert_eq!(
                LicenseKey::parse(&bad, &secret()),
                Err(KeyError::ChecksumMismatch)
            );
        }
        // A key made under another secret is a forgery here.
        let other_secret = ChecksumKey::new(&[7u8; 32]).unwrap();
        assert_eq!(
            LicenseKey::parse(text, &other_secret),
            Err(KeyError::ChecksumMismatch)
        );
    }

    #[test]
    fn malformed_keys_are_refused_before_the_checksum() {
        for bad in [
            "",
            "CELAEST",
            "CELAEST-MKT-A8F9D2E1",
            "CELAEST--A8F9D2E1-7B3C",
            "CELAEST-M-A8F9D2E1-7B3C",
            "CELAEST-MKTMKTMKTMK-A8F9D2E1-7B3C",
            "CELAEST-MKT-A8F9D2E-7B3C",
            "CELAEST-MKT-A8F9D2E1X-7B3C",
            "CELAEST-MKT-A8F9D2EG-7B3C",
            "CELAEST-MKT-A8F9D2E1-7B3",
            "CELAEST-MKT-A8F9D2E1-7B3CD",
            "CELAEST-MKT-A8F9D2E1-7B_C",
            "CELAEST-MKT-A8F9D2E1-7B3C-0000",
            "CELAEST-MK T-A8F9D2E1-7B3C",
            "XELAEST-MKT-A8F9D2E1-7B3C",
            "CELAEST_MKT_A8F9D2E1_7B3C",
            "CELAEST-MKÑ-A8F9D2E1-7B3C",
            "CELAEST-MKT-A8F9 D2E1-7B3C",
        ] {
            assert_eq!(
                LicenseKey::parse(bad, &secret()),
                Err(KeyError::Malformed),
                "{bad:?}"
            );
        }
        let huge = "A".repeat(10_000);
        assert_eq!(
            LicenseKey::parse(&huge, &secret()),
            Err(KeyError::Malformed)
        );
    }

    #[test]
    fn display_and_debug_never_show_the_whole_key() {
        let key = LicenseKey::assemble(mkt(), [0xA8, 0xF9, 0xD2, 0xE1], &secret());
        assert_eq!(key.to_string(), "CELAEST-MKT-A8F9****-****");
        assert_eq!(
            redact("CELAEST-CRM-0123ABCD-XY12"),
            "CELAEST-CRM-0123****-****"
        );
        for not_a_key in ["", "CELAEST-MKT", "a-b-c-d-e", "no dashes at all"] {
            assert_eq!(redact(not_a_key), "****", "{not_a_key}");
        }
        assert_eq!(format!("{key:?}"), "LicenseKey(CELAEST-MKT-A8F9****-****)");
        let checksum = key.as_str().rsplit_once('-').unwrap().1;
        for shown in [key.to_string(), format!("{key:?}"), format!("{key:#?}")] {
            assert!(
                !shown.contains("D2E1") && !shown.contains(checksum),
                "{shown}"
            );
        }
    }

    #[test]
    fn the_checksum_secret_is_never_printed_and_must_be_long_enough() {
        let shown = format!("{:?}", secret());
        assert!(!shown.contains("celaest-test"), "{shown}");
        assert_eq!(
            ChecksumKey::new(&[1u8; 31]).map(|_| ()),
            Err(ChecksumKeyTooShort)
        );
    }

    #[test]
    fn key_hash_is_the_sha256_of_the_canonical_key() {
        let key = LicenseKey::assemble(mkt(), [0xA8, 0xF9, 0xD2, 0xE1], &secret());
        let expected: [u8; 32] = Sha256::digest(key.as_str().as_bytes()).into();
        assert_eq!(key.hash(), KeyHash::from_bytes(expected));
        assert_eq!(KeyHash::from_slice(&expected), Some(key.hash()));
        assert_eq!(KeyHash::from_slice(&expected[..31]), None);
    }

    #[test]
    fn key_hash_travels_as_lowercase_hex_in_json() {
        let hash = KeyHash::from_bytes([0xab; 32]);
        let json = serde_json::to_value(hash).unwrap();
        assert_eq!(json, serde_json::json!("ab".repeat(32)));
        assert_eq!(hash.to_string(), "ab".repeat(32));
        assert_eq!(serde_json::from_value::<KeyHash>(json).unwrap(), hash);
        assert_eq!("AB".repeat(32).parse::<KeyHash>(), Ok(hash));
        assert!(serde_json::from_str::<KeyHash>("\"abcd\"").is_err());
    }

    #[test]
    fn product_code_serde_refuses_invalid_codes() {
        let code: ProductCode = serde_json::from_str("\"MKT\"").unwrap();
        assert_eq!(code, mkt());
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"MKT\"");
        assert!(serde_json::from_str::<ProductCode>("\"mkt\"").is_err());
    }
}
