//! The wire protocol between central and its edges (DESIGN.md, "Central ⇄ edge").
//!
//! One long-lived QUIC connection per edge. On its control stream the edge says [`EdgeFrame::Hello`]
//! (its id, region, protocol version and the last sequence it applied); central answers
//! [`CentralFrame::Welcome`] and then either the changes after that sequence or, when it is no
//! longer retained, a snapshot in chunks followed by the changes. From then on central pushes
//! [`CentralFrame::Changes`] in sequence order; the edge asks central to bind new IPs and sends
//! its validation reports, each batch acknowledged once stored.
//!
//! Frames are serde + postcard, each prefixed by its length as a big-endian `u32`, at most
//! [`MAX_FRAME_LEN`] bytes. Decoding takes untrusted bytes and never panics: a bad length or body
//! is an error, never a crash or an unbounded allocation.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::{
    KeyHash, LicenseState, LicenseStatus, ProductCode, ValidationCode, validation::BoundIps,
};

/// ALPN protocol id of the replication connection.
pub const ALPN: &[u8] = b"celaest-repl/1";

/// Bumped on any incompatible change of these frames.
pub const PROTOCOL_VERSION: u16 = 1;
/// The largest frame either side accepts (a snapshot chunk stays well below it).
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;
/// Licenses per snapshot chunk.
pub const SNAPSHOT_CHUNK: usize = 5_000;

/// A license as an edge holds it: what a validation needs, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedLicense {
    pub id: Uuid,
    pub key_hash: KeyHash,
    pub product_code: ProductCode,
    pub status: LicenseStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_ips: u32,
    pub bound_ips: BoundIps,
}

impl ReplicatedLicense {
    /// The state the decision function takes, given whether the product validates.
    pub fn state(&self, product_active: bool) -> LicenseState {
        LicenseState {
            id: self.id,
            product_code: self.product_code,
            product_active,
            status: self.status,
            expires_at: self.expires_at,
            max_ips: self.max_ips,
            bound_ips: self.bound_ips.clone(),
        }
    }
}

/// Whether a product's licenses validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedProduct {
    pub id: Uuid,
    pub code: ProductCode,
    pub active: bool,
}

/// One change of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    LicenseUpsert(ReplicatedLicense),
    LicenseDelete { id: Uuid, key_hash: KeyHash },
    ProductUpsert(ReplicatedProduct),
}

/// A change and its place in the outbox's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedChange {
    pub seq: u64,
    pub change: Change,
}

/// A validation answered at an edge, reported to central. `id` is made by the edge, so central
/// stores a report once however many times it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub id: Uuid,
    pub license_id: Option<Uuid>,
    pub key_hash: Option<KeyHash>,
    pub ip: IpAddr,
    pub device_info: Option<String>,
    pub code: ValidationCode,
    pub validated_at: DateTime<Utc>,
}

impl ValidationReport {
    /// The one way a validation's report is made, by whoever answered it: a new time-ordered id
    /// from the validation's instant.
    pub fn new(
        license_id: Option<Uuid>,
        key_hash: Option<KeyHash>,
        ip: IpAddr,
        device_info: Option<String>,
        code: ValidationCode,
        validated_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: crate::ids::v7_at(validated_at),
            license_id,
            key_hash,
            ip,
            device_info,
            code,
            validated_at,
        }
    }
}

/// How central answered a bind request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindOutcome {
    Bound {
        remaining: u32,
    },
    AlreadyBound {
        remaining: u32,
    },
    Full,
    /// The license is gone (deleted meanwhile).
    NotFound,
}

/// Edge → central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EdgeFrame {
    /// The first frame of a connection.
    Hello {
        protocol_version: u16,
        edge_id: String,
        region: String,
        last_seq: Option<u64>,
    },
    /// Bind `ip` to a license with a free slot (central is the only writer).
    Bind {
        request_id: u64,
        license_id: Uuid,
        ip: IpAddr,
        device_info: Option<String>,
    },
    /// Validations answered at the edge.
    Reports {
        batch_id: Uuid,
        reports: Vec<ValidationReport>,
    },
    /// The last sequence the edge applied (after each batch of changes), for the fleet view.
    Progress { applied_seq: u64 },
}

/// How central starts feeding an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sync {
    /// The edge's sequence is retained: changes after it follow.
    Resume,
    /// It is not: a snapshot as of `snapshot_seq` follows, then the changes after it.
    Snapshot { snapshot_seq: u64 },
}

/// Central → edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CentralFrame {
    Welcome {
        protocol_version: u16,
        head_seq: u64,
        sync: Sync,
    },
    /// The connection is refused (e.g. an incompatible protocol version).
    Refused {
        reason: String,
        supported_version: u16,
    },
    SnapshotChunk {
        licenses: Vec<ReplicatedLicense>,
        products: Vec<ReplicatedProduct>,
    },
    /// The snapshot is complete; it reflects every change up to `seq`.
    SnapshotEnd {
        seq: u64,
    },
    Changes(Vec<SequencedChange>),
    BindResult {
        request_id: u64,
        outcome: BindOutcome,
    },
    /// The report batch is stored.
    ReportsAck {
        batch_id: Uuid,
    },
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The announced or produced length exceeds [`MAX_FRAME_LEN`].
    TooLarge(usize),
    /// The body is not a valid frame.
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge(len) => write!(
                f,
                "frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit"
            ),
            Self::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A frame with its 4-byte big-endian length prefix.
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_stdvec(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The body length announced by a 4-byte prefix, checked against the limit before anything is
/// allocated for it.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = usize::try_from(u32::from_be_bytes(prefix))
        .map_err(|_| FrameError::TooLarge(usize::MAX))?;
    if len > MAX_FRAME_LEN {
        Err(FrameError::TooLarge(len))
    } else {
        Ok(len)
    }
}

/// Decodes one frame body (without its prefix); trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (frame, rest) =
        postcard::take_from_bytes(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if rest.is_empty() {
        Ok(frame)
    } else {
        Err(FrameError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )))
    }
}

/// Decodes the first complete frame of `buf`; `Ok(None)` when more bytes are needed. Returns the
/// frame and how many bytes it took.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(prefix);
    let len = frame_len(len_bytes)?;
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    decode_body(body).map(|frame| Some((frame, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license() -> ReplicatedLicense {
        ReplicatedLicense {
            id: Uuid::from_u128(7),
            key_hash: KeyHash::from_bytes([3; 32]),
            product_code: ProductCode::parse("MKT").unwrap(),
            status: LicenseStatus::Active,
            expires_at: None,
            max_ips: 5,
            bound_ips: ["203.0.113.1".parse::<IpAddr>().unwrap()]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn every_frame_round_trips() {
        let central = [
            CentralFrame::Welcome {
                protocol_version: PROTOCOL_VERSION,
                head_seq: 9,
                sync: Sync::Snapshot { snapshot_seq: 9 },
            },
            CentralFrame::SnapshotChunk {
                licenses: vec![license()],
                products: vec![ReplicatedProduct {
                    id: Uuid::from_u128(1),
                    code: ProductCode::parse("MKT").unwrap(),
                    active: true,
                }],
            },
            CentralFrame::Changes(vec![
                SequencedChange {
                    seq: 10,
                    change: Change::LicenseUpsert(license()),
                },
                SequencedChange {
                    seq: 11,
                    change: Change::LicenseDelete {
                        id: Uuid::from_u128(7),
                        key_hash: KeyHash::from_bytes([3; 32]),
                    },
                },
            ]),
            CentralFrame::BindResult {
                request_id: 4,
                outcome: BindOutcome::Bound { remaining: 3 },
            },
        ];
        for frame in central {
            let bytes = encode(&frame).unwrap();
            let (back, used) = decode::<CentralFrame>(&bytes).unwrap().unwrap();
            assert_eq!((back, used), (frame, bytes.len()));
        }
        let hello = EdgeFrame::Hello {
            protocol_version: 1,
            edge_id: "edge-eu-1".into(),
            region: "eu-west".into(),
            last_seq: Some(3),
        };
        let bytes = encode(&hello).unwrap();
        assert_eq!(decode::<EdgeFrame>(&bytes).unwrap().unwrap().0, hello);
    }

    #[test]
    fn a_partial_frame_asks_for_more_bytes() {
        let bytes = encode(&CentralFrame::ReportsAck {
            batch_id: Uuid::from_u128(1),
        })
        .unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                decode::<CentralFrame>(&bytes[..cut]).unwrap(),
                None,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode::<CentralFrame>(&bytes),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // A deterministic pseudo-random walk over many lengths and contents.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..20_000u32 {
            let len = usize::try_from(round % 300).unwrap();
            let mut body = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                body.push(u8::try_from(state & 0xff).unwrap());
            }
            let mut framed = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            let _ = decode::<CentralFrame>(&framed);
            let _ = decode::<EdgeFrame>(&framed);
            let _ = decode::<EdgeFrame>(&body);
        }
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let mut bytes = encode(&CentralFrame::ReportsAck {
            batch_id: Uuid::from_u128(1),
        })
        .unwrap();
        bytes.push(0);
        let len = u32::try_from(bytes.len() - 4).unwrap();
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            decode::<CentralFrame>(&bytes),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn a_snapshot_chunk_of_licenses_stays_under_the_frame_limit() {
        let chunk = CentralFrame::SnapshotChunk {
            licenses: vec![license(); SNAPSHOT_CHUNK],
            products: vec![],
        };
        assert!(encode(&chunk).unwrap().len() < MAX_FRAME_LEN);
    }
}
