//! Signed validation answers (Ed25519), so licensed software can trust an answer that came
//! through any proxy, cache or edge.
//!
//! The signature covers the exact response body bytes and travels in the [`SIGNATURE_HEADER`]
//! header as `keyid="<kid>", algorithm="ed25519", signature="<base64>"`. The body itself carries
//! the request's nonce and a timestamp (see [`ValidationAnswer`](crate::validation::ValidationAnswer)),
//! which is what lets a client refuse a replayed answer. Public keys are published as JWKs
//! (`OKP`/`Ed25519`), each with a `kid`; a [`KeyRing`] signs with its current key and still
//! accepts its previous ones, so keys can be rotated without breaking clients that have not yet
//! fetched the new one.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{SuccessEnvelope, hex};

/// The response header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Celaest-Signature";

/// The `algorithm` parameter of the header.
pub const ALGORITHM: &str = "ed25519";

/// Longest header value read: far above a real one (~130 bytes), so parsing stays cheap.
const MAX_HEADER_LEN: usize = 512;
/// Longest key id accepted.
const MAX_KID_LEN: usize = 64;

/// Why a key could not be made or an answer could not be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is not `keyid="…", algorithm="…", signature="…"` with a 64-byte base64 signature.
    MalformedHeader,
    /// The header names an algorithm other than `ed25519`.
    UnsupportedAlgorithm,
    /// The header's `keyid` is not a key this verifier trusts.
    UnknownKey,
    /// The signature does not match the body under the named key.
    BadSignature,
    /// A seed, public key, key id or JWK is not a usable Ed25519 key.
    InvalidKey,
    /// Another key already has this key id.
    DuplicateKid,
    /// The random source failed.
    Random,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::MalformedHeader => "malformed signature header",
            SignatureError::UnsupportedAlgorithm => "unsupported signature algorithm",
            SignatureError::UnknownKey => "signature made with an unknown key",
            SignatureError::BadSignature => "signature does not match the body",
            SignatureError::InvalidKey => "invalid Ed25519 key",
            SignatureError::DuplicateKid => "another key already has this key id",
            SignatureError::Random => "the random source failed",
        })
    }
}

impl std::error::Error for SignatureError {}

/// A key id is copied into a quoted header parameter, so it is kept to 1–64 of `[A-Za-z0-9._-]`.
fn check_kid(kid: &str) -> Result<(), SignatureError> {
    let ok = (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SignatureError::InvalidKey)
    }
}

/// The default key id: the first 16 hex digits (8 bytes) of SHA-256 of the raw public key. Stable
/// for a key, different across keys, and computable by anyone holding the public key.
fn derive_kid(public: &[u8; 32]) -> String {
    let digest = Sha256::digest(public);
    hex::encode(&digest[..8])
}

/// The private key answers are signed with.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: [u8; 32],
    kid: String,
}

impl SigningKey {
    /// The key for a 32-byte Ed25519 seed (RFC 8032's private key), with the derived key id.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, SignatureError> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| SignatureError::InvalidKey)?;
        let public = <[u8; 32]>::try_from(pair.public_key().as_ref())
            .map_err(|_| SignatureError::InvalidKey)?;
        Ok(Self {
            kid: derive_kid(&public),
            pair,
            public,
        })
    }

    /// A new key from `rng`, with the seed to store (the only thing needed to load it again).
    pub fn generate(rng: &dyn SecureRandom) -> Result<(Self, [u8; 32]), SignatureError> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed).map_err(|_| SignatureError::Random)?;
        Ok((Self::from_seed(&seed)?, seed))
    }

    /// Replaces the derived key id (1–64 of `[A-Za-z0-9._-]`).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, SignatureError> {
        let kid = kid.into();
        check_kid(&kid)?;
        self.kid = kid;
        Ok(self)
    }

    /// The key id put in every signature header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, to publish and to verify with.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            kid: self.kid.clone(),
            public: self.public,
        }
    }

    /// Serializes `data` in the success envelope once and signs exactly those bytes: the one
    /// way central and edges make a signed answer.
    pub fn sign_envelope<T: Serialize>(&self, data: T) -> Result<SignedBody, serde_json::Error> {
        let body = serde_json::to_vec(&SuccessEnvelope::new(data))?;
        let signature = self.sign(&body).to_header_value();
        Ok(SignedBody { body, signature })
    }

    /// Signs the exact bytes of a response body.
    pub fn sign(&self, body: &[u8]) -> Signature {
        let mut bytes = [0u8; 64];
        for (out, b) in bytes.iter_mut().zip(self.pair.sign(body).as_ref()) {
            *out = *b;
        }
        Signature {
            kid: self.kid.clone(),
            bytes,
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A response body and the [`SIGNATURE_HEADER`] value that signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBody {
    /// `{"success": true, "data": …}`, exactly as sent.
    pub body: Vec<u8>,
    /// `keyid="…", algorithm="ed25519", signature="…"`.
    pub signature: String,
}

/// A signature and the id of the key that made it: the value of the [`SIGNATURE_HEADER`] header.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    kid: String,
    bytes: [u8; 64],
}

impl Signature {
    /// The id of the key that made it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `keyid="<kid>", algorithm="ed25519", signature="<base64>"`.
    pub fn to_header_value(&self) -> String {
        format!(
            "keyid=\"{}\", algorithm=\"{ALGORITHM}\", signature=\"{}\"",
            self.kid,
            STANDARD.encode(self.bytes)
        )
    }

    /// Reads a header value. Parameters may come in any order with any spacing after the commas;
    /// unknown ones are ignored (room to add, e.g., a digest later); each known one must appear
    /// once, quoted.
    pub fn from_header_value(value: &str) -> Result<Self, SignatureError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(SignatureError::MalformedHeader);
        }
        let (mut kid, mut algorithm, mut signature) = (None, None, None);
        for param in value.split(',') {
            let (name, quoted) = param
                .trim()
                .split_once('=')
                .ok_or(SignatureError::MalformedHeader)?;
            let text = quoted
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains('"'))
                .ok_or(SignatureError::MalformedHeader)?;
            let slot = match name {
                "keyid" => &mut kid,
                "algorithm" => &mut algorithm,
                "signature" => &mut signature,
                _ => continue,
            };
            if slot.replace(text).is_some() {
                return Err(SignatureError::MalformedHeader);
            }
        }
        let (Some(kid), Some(algorithm), Some(signature)) = (kid, algorithm, signature) else {
            return Err(SignatureError::MalformedHeader);
        };
        if algorithm != ALGORITHM {
            return Err(SignatureError::UnsupportedAlgorithm);
        }
        check_kid(kid).map_err(|_| SignatureError::MalformedHeader)?;
        let bytes = STANDARD
            .decode(signature)
            .ok()
            .and_then(|raw| <[u8; 64]>::try_from(raw).ok())
            .ok_or(SignatureError::MalformedHeader)?;
        Ok(Self {
            kid: kid.to_owned(),
            bytes,
        })
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header_value())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_header_value())
    }
}

/// A public key that answers can be verified with, and its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    public: [u8; 32],
}

impl VerifyingKey {
    /// The key for 32 raw public-key bytes, with the derived key id.
    pub fn from_bytes(public: [u8; 32]) -> Self {
        Self {
            kid: derive_kid(&public),
            public,
        }
    }

    /// Replaces the derived key id (1–64 of `[A-Za-z0-9._-]`).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, SignatureError> {
        let kid = kid.into();
        check_kid(&kid)?;
        self.kid = kid;
        Ok(self)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32 public-key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.public
    }

    /// Checks that `header_value` is this key's signature of exactly `body`.
    pub fn verify(&self, body: &[u8], header_value: &str) -> Result<(), SignatureError> {
        self.verify_signature(body, &Signature::from_header_value(header_value)?)
    }

    fn verify_signature(&self, body: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        if signature.kid != self.kid {
            return Err(SignatureError::UnknownKey);
        }
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(body, &signature.bytes)
            .map_err(|_| SignatureError::BadSignature)
    }

    /// The key as a public JWK: `{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"use":"sig","alg":"EdDSA"}`.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(self.public),
            kid: Some(self.kid.clone()),
            key_use: Some("sig".to_owned()),
            alg: Some("EdDSA".to_owned()),
        }
    }

    /// Reads a public JWK. `kty` must be `OKP` and `crv` `Ed25519`; `use` and `alg`, when present,
    /// must be `sig` and `EdDSA` (or RFC 9864's `Ed25519`); without a `kid` the derived one is used.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, SignatureError> {
        let usable = jwk.kty == "OKP"
            && jwk.crv == "Ed25519"
            && jwk.key_use.as_deref().is_none_or(|u| u == "sig")
            && jwk
                .alg
                .as_deref()
                .is_none_or(|a| a == "EdDSA" || a == "Ed25519");
        if !usable {
            return Err(SignatureError::InvalidKey);
        }
        let public = URL_SAFE_NO_PAD
            .decode(&jwk.x)
            .ok()
            .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
            .ok_or(SignatureError::InvalidKey)?;
        let key = Self::from_bytes(public);
        match &jwk.kid {
            Some(kid) => key.with_kid(kid.as_str()),
            None => Ok(key),
        }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("x", &URL_SAFE_NO_PAD.encode(self.public))
            .finish()
    }
}

/// A public Ed25519 key in JSON Web Key form (RFC 8037). Never carries the private part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

/// A JWK set (`{"keys":[…]}`), as published for clients to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// The public keys a verifier trusts, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Trusts `key` too. The same key twice is a no-op; a different key under a key id already
    /// trusted is refused, so a key id always names one key.
    pub fn insert(&mut self, key: VerifyingKey) -> Result<(), SignatureError> {
        match self.get(&key.kid) {
            Some(existing) if *existing == key => Ok(()),
            Some(_) => Err(SignatureError::DuplicateKid),
            None => {
                self.keys.push(key);
                Ok(())
            }
        }
    }

    /// The trusted key with this id.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// Stops trusting the key with this id; `false` if there was none.
    pub fn remove(&mut self, kid: &str) -> bool {
        let before = self.keys.len();
        self.keys.retain(|key| key.kid != kid);
        self.keys.len() != before
    }

    /// Checks that `header_value` is a trusted key's signature of exactly `body`.
    pub fn verify(&self, body: &[u8], header_value: &str) -> Result<(), SignatureError> {
        let signature = Signature::from_header_value(header_value)?;
        self.get(&signature.kid)
            .ok_or(SignatureError::UnknownKey)?
            .verify_signature(body, &signature)
    }

    /// Every trusted key, as a JWK set.
    pub fn to_jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(VerifyingKey::to_jwk).collect(),
        }
    }

    /// Trusts every key of a JWK set; refuses the set if any key is unusable or ids clash.
    pub fn from_jwks(jwks: &JwkSet) -> Result<Self, SignatureError> {
        let mut set = Self::default();
        for jwk in &jwks.keys {
            set.insert(VerifyingKey::from_jwk(jwk)?)?;
        }
        Ok(set)
    }
}

/// The signer's side of rotation: the current private key, plus the public keys of earlier ones
/// that answers may still be checked against.
#[derive(Debug)]
pub struct KeyRing {
    current: SigningKey,
    trusted: KeySet,
}

impl KeyRing {
    /// A ring that signs with `current` and trusts only it.
    pub fn new(current: SigningKey) -> Self {
        let mut trusted = KeySet::default();
        trusted.keys.push(current.verifying_key());
        Self { current, trusted }
    }

    /// Also trusts an earlier key.
    pub fn with_previous(mut self, previous: VerifyingKey) -> Result<Self, SignatureError> {
        self.trusted.insert(previous)?;
        Ok(self)
    }

    /// Signs with `next` from now on; the key it replaces stays trusted until removed with
    /// [`KeyRing::retire`].
    pub fn rotate(&mut self, next: SigningKey) -> Result<(), SignatureError> {
        self.trusted.insert(next.verifying_key())?;
        self.current = next;
        Ok(())
    }

    /// Stops trusting an earlier key; the current one cannot be retired (`false`).
    pub fn retire(&mut self, kid: &str) -> bool {
        kid != self.current.kid && self.trusted.remove(kid)
    }

    /// The key answers are signed with now.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// Signs the exact bytes of a response body with the current key.
    pub fn sign(&self, body: &[u8]) -> Signature {
        self.current.sign(body)
    }

    /// Checks a signature against the current key or any earlier trusted one.
    pub fn verify(&self, body: &[u8], header_value: &str) -> Result<(), SignatureError> {
        self.trusted.verify(body, header_value)
    }

    /// Every trusted public key (current first).
    pub fn key_set(&self) -> &KeySet {
        &self.trusted
    }

    /// The JWK set to publish.
    pub fn jwks(&self) -> JwkSet {
        self.trusted.to_jwks()
    }
}

/// Reads 32 bytes of key material as operators write it in configuration: 32 raw characters, 64
/// hex digits, or base64 (standard or URL-safe, padded or not). `None` for anything else.
pub fn parse_key32(raw: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let bytes = raw.as_bytes();
    if bytes.len() == 32 {
        return bytes.try_into().ok();
    }
    if bytes.len() == 64 {
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        return Some(out);
    }
    let unpadded = raw.trim_end_matches('=');
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(unpadded)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
        .ok()?;
    decoded.try_into().ok()
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    const BODY: &[u8] =
        br#"{"success":true,"data":{"valid":true,"code":"VALID","nonce":"abc","timestamp":"2026-03-01T12:00:00Z"}}"#;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_seed(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_signed_body_verifies_with_the_public_key() {
        let signing = key(1);
        let header = signing.sign(BODY).to_header_value();
        assert!(header.starts_with(&format!(
            "keyid=\"{}\", algorithm=\"ed25519\", signature=\"",
            signing.kid()
        )));
        assert_eq!(signing.verifying_key().verify(BODY, &header), Ok(()));
    }

    #[test]
    fn a_signed_envelope_is_the_success_envelope_and_verifies_as_sent() {
        let signing = key(3);
        let signed = signing
            .sign_envelope(serde_json::json!({"valid": true}))
            .unwrap();
        assert_eq!(signed.body, br#"{"success":true,"data":{"valid":true}}"#);
        assert_eq!(
            signing
                .verifying_key()
                .verify(&signed.body, &signed.signature),
            Ok(())
        );
    }

    #[test]
    fn signing_follows_rfc_8032() {
        // RFC 8032 §7.1, test 1: the empty message.
        let seed: [u8; 32] =
            crate::hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap();
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let expected = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        let signing = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(
            crate::hex::encode(signing.verifying_key().as_bytes()),
            public
        );
        assert_eq!(crate::hex::encode(&signing.sign(b"").bytes), expected);
    }

    #[test]
    fn a_tampered_body_fails() {
        let signing = key(1);
        let header = signing.sign(BODY).to_header_value();
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("\"valid\":true", "\"valid\":false");
        assert_eq!(
            signing.verifying_key().verify(tampered.as_bytes(), &header),
            Err(SignatureError::BadSignature)
        );
        let mut trailing = BODY.to_vec();
        trailing.push(b' ');
        assert_eq!(
            signing.verifying_key().verify(&trailing, &header),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn a_signature_under_another_key_id_fails() {
        let signing = key(1);
        let header = signing.sign(BODY).to_header_value();
        assert_eq!(
            key(2).verifying_key().verify(BODY, &header),
            Err(SignatureError::UnknownKey)
        );
        // Right key, but the header claims another id.
        let relabelled = header.replace(signing.kid(), "someone-else");
        assert_eq!(
            signing.verifying_key().verify(BODY, &relabelled),
            Err(SignatureError::UnknownKey)
        );
        // Another key that claims this key's id.
        let impostor = key(2).with_kid(signing.kid()).unwrap();
        let forged = impostor.sign(BODY).to_header_value();
        assert_eq!(
            signing.verifying_key().verify(BODY, &forged),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn key_ids_are_the_first_16_hex_digits_of_the_public_key_hash() {
        let signing = key(1);
        let digest = Sha256::digest(signing.verifying_key().as_bytes());
        assert_eq!(signing.kid(), crate::hex::encode(&digest[..8]));
        assert_eq!(signing.kid().len(), 16);
        assert_ne!(key(1).kid(), key(2).kid());
        assert_eq!(
            key(1).with_kid("2026-03").unwrap().kid(),
            "2026-03",
            "a given id replaces the derived one"
        );
        for bad in ["", "has space", "quote\"", "comma,", &"k".repeat(65)] {
            assert_eq!(
                key(1).with_kid(bad).map(|_| ()),
                Err(SignatureError::InvalidKey)
            );
        }
    }

    #[test]
    fn header_parameters_may_come_in_any_order_and_unknown_ones_are_ignored() {
        let signature = key(1).sign(BODY);
        let encoded = STANDARD.encode(signature.bytes);
        let value = format!(
            "signature=\"{encoded}\",algorithm=\"ed25519\",  extra=\"x\", keyid=\"{}\"",
            signature.kid()
        );
        assert_eq!(Signature::from_header_value(&value), Ok(signature));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let signature = key(1).sign(BODY);
        let kid = signature.kid().to_owned();
        let sig = STANDARD.encode(signature.bytes);
        let short = STANDARD.encode([0u8; 63]);
        for bad in [
            String::new(),
            "garbage".to_owned(),
            format!("keyid=\"{kid}\", algorithm=\"ed25519\""),
            format!("keyid={kid}, algorithm=\"ed25519\", signature=\"{sig}\""),
            format!("keyid=\"{kid}\", keyid=\"{kid}\", algorithm=\"ed25519\", signature=\"{sig}\""),
            format!("keyid=\"{kid}\", algorithm=\"ed25519\", signature=\"not base64!\""),
            format!("keyid=\"{kid}\", algorithm=\"ed25519\", signature=\"{short}\""),
            format!("keyid=\"\", algorithm=\"ed25519\", signature=\"{sig}\""),
            format!(
                "keyid=\"{kid}\", algorithm=\"ed25519\", signature=\"{sig}\", x=\"{}\"",
                "y".repeat(600)
            ),
        ] {
            assert_eq!(
                Signature::from_header_value(&bad),
                Err(SignatureError::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(
            Signature::from_header_value(&format!(
                "keyid=\"{kid}\", algorithm=\"rsa-sha256\", signature=\"{sig}\""
            )),
            Err(SignatureError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn a_public_key_round_trips_through_its_jwk() {
        let verifying = key(1).verifying_key();
        let jwk = verifying.to_jwk();
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(verifying.as_bytes()),
                "kid": verifying.kid(),
                "use": "sig",
                "alg": "EdDSA",
            })
        );
        let back: Jwk = serde_json::from_value(json).unwrap();
        assert_eq!(VerifyingKey::from_jwk(&back), Ok(verifying.clone()));

        // A minimal JWK (no kid, use or alg) gets the derived key id.
        let minimal = Jwk {
            kid: None,
            key_use: None,
            alg: None,
            ..verifying.to_jwk()
        };
        assert_eq!(VerifyingKey::from_jwk(&minimal), Ok(verifying));
    }

    #[test]
    fn unusable_jwks_are_refused() {
        let good = key(1).verifying_key().to_jwk();
        let cases = [
            Jwk {
                kty: "EC".to_owned(),
                ..good.clone()
            },
            Jwk {
                crv: "X25519".to_owned(),
                ..good.clone()
            },
            Jwk {
                key_use: Some("enc".to_owned()),
                ..good.clone()
            },
            Jwk {
                alg: Some("ES256".to_owned()),
                ..good.clone()
            },
            Jwk {
                x: URL_SAFE_NO_PAD.encode([1u8; 31]),
                ..good.clone()
            },
            Jwk {
                x: "!!".to_owned(),
                ..good.clone()
            },
            Jwk {
                kid: Some("bad kid".to_owned()),
                ..good
            },
        ];
        for jwk in cases {
            assert_eq!(
                VerifyingKey::from_jwk(&jwk),
                Err(SignatureError::InvalidKey),
                "{jwk:?}"
            );
        }
    }

    #[test]
    fn a_verifier_holding_old_and_new_keys_accepts_answers_signed_by_either() {
        let old = key(1);
        let old_header = old.sign(BODY).to_header_value();
        let mut ring = KeyRing::new(old);
        ring.rotate(key(2)).unwrap();
        let new_header = ring.sign(BODY).to_header_value();
        assert_eq!(ring.current().kid(), key(2).kid());

        assert_eq!(ring.verify(BODY, &old_header), Ok(()));
        assert_eq!(ring.verify(BODY, &new_header), Ok(()));

        // A client that fetched the published set does the same.
        let jwks: JwkSet =
            serde_json::from_str(&serde_json::to_string(&ring.jwks()).unwrap()).unwrap();
        let client = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(client.verify(BODY, &old_header), Ok(()));
        assert_eq!(client.verify(BODY, &new_header), Ok(()));

        // Once retired, the old key is no longer accepted; the current one cannot be retired.
        assert!(ring.retire(key(1).kid()));
        assert_eq!(
            ring.verify(BODY, &old_header),
            Err(SignatureError::UnknownKey)
        );
        assert!(!ring.retire(key(2).kid()));
        assert_eq!(ring.verify(BODY, &new_header), Ok(()));
    }

    #[test]
    fn a_ring_can_be_rebuilt_from_its_current_seed_and_earlier_public_keys() {
        let old_header = key(1).sign(BODY).to_header_value();
        let ring = KeyRing::new(key(2))
            .with_previous(key(1).verifying_key())
            .unwrap();
        assert_eq!(ring.verify(BODY, &old_header), Ok(()));
        assert_eq!(ring.jwks().keys.len(), 2);
        assert_eq!(
            KeyRing::new(key(2))
                .with_previous(key(3).with_kid(key(2).kid()).unwrap().verifying_key())
                .map(|_| ()),
            Err(SignatureError::DuplicateKid)
        );
    }

    #[test]
    fn generated_keys_come_with_the_seed_that_reloads_them() {
        let (signing, seed) = SigningKey::generate(&SystemRandom::new()).unwrap();
        let reloaded = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(reloaded.verifying_key(), signing.verifying_key());
        assert!(!format!("{signing:?}").contains(&crate::hex::encode(&seed)));
    }
}
