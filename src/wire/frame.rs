//! The frames that cross a parent–worker link.
//!
//! Layout: `payload bytes | header (codec) | header length (u32, little endian)`. The
//! payload comes first so that a task or an output is encoded directly into the buffer
//! that goes on the wire; the header is appended once its size is known.

use serde::{Deserialize, Serialize};

use super::codec;
use crate::error::{Direction, Side, TaskError};

/// The version of the protocol between a pool and its workers (and its fork server).
/// Bumped whenever a message changes its layout or its meaning; a parent and a worker
/// built from different procpool versions talk only if theirs agree.
///
/// Whatever else changes, two things keep their place in every version, so that each
/// side can tell the other's version: the first field of `Setup`, and `Ready` as the
/// first variant of `Response` with the protocol as its first field.
pub(crate) const PROTOCOL: u32 = 4;

/// The procpool release this protocol is spoken by, for messages about a mismatch.
pub(crate) const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// Parent → worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Sent once, first: the parent's protocol, limits to apply, and the pool's
    /// context as the payload.
    Setup {
        protocol: u32,
        memory_limit: Option<u64>,
        core_dumps: bool,
        has_context: bool,
    },
    /// Run the task named `task` whose concrete types have the fingerprint `types`
    /// (see `task::TaskTypes`); its encoding is the payload. The frame brings `fds`
    /// descriptors, the task's shared buffers.
    Run {
        id: u64,
        task: String,
        types: u64,
        fds: u32,
    },
    /// Exit cleanly.
    Shutdown,
    /// Do not run task (or batch) `id` if it has not started: answer `Skipped` in its
    /// place.
    Skip { id: u64 },
    /// Run `count` tasks named `task`, one after the other; the payload holds their
    /// encodings (see [`batch`](super::batch)). The frame brings `fds` descriptors, the
    /// shared buffers of all its tasks (see [`fds`](super::fds)). Answered by `Records`
    /// responses.
    Batch {
        id: u64,
        task: String,
        types: u64,
        count: u32,
        fds: u32,
    },
    /// The descriptor sent along with this frame is the worker's batch journal.
    Journal,
}

/// Worker → parent. The payload of `Output` is the encoded output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Response {
    /// The worker applied its `Setup` and takes tasks; it speaks `protocol`, as
    /// procpool `release`. (Always the first variant, with the protocol first.)
    Ready {
        protocol: u32,
        release: String,
    },
    /// The output of task `id` is the payload; the frame brings `fds` descriptors, the
    /// output's shared buffers.
    Output {
        id: u64,
        fds: u32,
    },
    Failure {
        id: u64,
        failure: Failure,
    },
    /// Task (or batch) `id` was skipped before it started: as asked (`Skip`), or
    /// refused because the parent took it back (see `wire::journal`).
    Skipped {
        id: u64,
    },
    /// The records of the next `count` tasks of batch `id` (the payload); `last` on
    /// the batch's final response. The batch has been running for `nanos`.
    Records {
        id: u64,
        count: u32,
        last: bool,
        nanos: u64,
    },
}

/// A task that ended without an output while its worker survived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panicked {
        message: String,
        location: Option<String>,
    },
    Failed {
        chain: Vec<String>,
    },
    Codec {
        direction: Direction,
        message: String,
    },
    UnknownTask {
        name: String,
        worker: String,
    },
    /// The worker has tasks under this name, but for other types than those the
    /// parent sent (`registered`, each as `Task -> Output`).
    WrongTypes {
        name: String,
        registered: Vec<String>,
    },
}

impl Failure {
    /// The error the caller sees; `submitted` describes the task's types as the
    /// parent knows them.
    pub(crate) fn into_error(self, submitted: impl FnOnce() -> String) -> TaskError {
        match self {
            Failure::Panicked { message, location } => TaskError::Panicked { message, location },
            Failure::Failed { chain } => TaskError::Failed { chain },
            Failure::Codec { direction, message } => TaskError::Codec {
                side: Side::Worker,
                direction,
                message,
            },
            Failure::UnknownTask { name, worker } => TaskError::UnknownTask { name, worker },
            Failure::WrongTypes { name, registered } => TaskError::WrongTypes {
                name,
                submitted: submitted(),
                registered,
                side: Side::Worker,
            },
        }
    }
}

/// A frame that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {0} bytes is too short")]
    Truncated(usize),
    #[error("header length {header} does not fit a frame of {frame} bytes")]
    BadLength { header: usize, frame: usize },
    #[error("bad header: {0}")]
    Header(String),
}

const LEN: usize = 4;

/// Builds a frame: `payload` writes the payload into the buffer, then `header` is
/// appended. A payload error is returned as is and nothing is sent.
pub(crate) fn encode<H: Serialize, E>(
    header: &H,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut buf = Vec::new();
    payload(&mut buf)?;
    Ok(seal(buf, header))
}

/// Appends `header` and its length to a buffer that already holds the payload.
pub(crate) fn seal<H: Serialize>(mut buf: Vec<u8>, header: &H) -> Vec<u8> {
    let start = buf.len();
    codec::encode_into(header, &mut buf).expect("frame headers always encode");
    let len = u32::try_from(buf.len() - start).expect("frame headers are small");
    buf.extend_from_slice(&len.to_le_bytes());
    buf
}

/// A frame with no payload.
pub(crate) fn header_only<H: Serialize>(header: &H) -> Vec<u8> {
    seal(Vec::new(), header)
}

/// Splits a frame into its header and the length of its payload (which starts at 0).
pub(crate) fn decode<H: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<(H, usize), FrameError> {
    let Some(body) = frame.len().checked_sub(LEN) else {
        return Err(FrameError::Truncated(frame.len()));
    };
    let len_bytes: [u8; LEN] = frame[body..].try_into().expect("LEN bytes");
    let header_len = u32::from_le_bytes(len_bytes) as usize;
    let Some(payload_len) = body.checked_sub(header_len) else {
        return Err(FrameError::BadLength {
            header: header_len,
            frame: frame.len(),
        });
    };
    let header = codec::decode(&frame[payload_len..body]).map_err(FrameError::Header)?;
    Ok((header, payload_len))
}

/// The protocol a worker's answer to its `Setup` announces: `Ok` for a `Ready` of this
/// protocol, `Err(Some(n))` for a `Ready` of protocol `n` (whatever else it holds),
/// `Err(None)` for a frame that is no `Ready` of any version.
pub(crate) fn ready_protocol(frame: &[u8]) -> Result<(), Option<u32>> {
    match decode::<Response>(frame) {
        Ok((Response::Ready { protocol, .. }, 0)) if protocol == PROTOCOL => return Ok(()),
        Ok((Response::Ready { protocol, .. }, 0)) => return Err(Some(protocol)),
        _ => {}
    }
    // Another version's `Ready` may not decode as ours: read only its fixed start.
    let Some(body) = frame.len().checked_sub(LEN) else {
        return Err(None);
    };
    let header_len = u32::from_le_bytes(frame[body..].try_into().expect("LEN bytes")) as usize;
    if header_len != body {
        return Err(None);
    }
    match codec::decode_prefix::<(u32, u32)>(&frame[..body]) {
        Ok((0, protocol)) if protocol != PROTOCOL => Err(Some(protocol)),
        _ => Err(None),
    }
}

/// The protocol a `Setup` frame was sent with, read from its fixed start: `None` if it
/// is no `Setup`.
pub(crate) fn setup_protocol(frame: &[u8]) -> Option<u32> {
    let body = frame.len().checked_sub(LEN)?;
    let header_len = u32::from_le_bytes(frame[body..].try_into().expect("LEN bytes")) as usize;
    let payload_len = body.checked_sub(header_len)?;
    match codec::decode_prefix::<(u32, u32)>(&frame[payload_len..body]) {
        Ok((0, protocol)) => Some(protocol),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_frame() -> Vec<u8> {
        encode(
            &Request::Run {
                id: 42,
                task: "demo::Square".into(),
                types: 7,
                fds: 0,
            },
            |buf| codec::encode_into(&12345u64, buf),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_keeps_header_and_payload() {
        let frame = run_frame();
        let (header, payload_len): (Request, usize) = decode(&frame).unwrap();
        assert_eq!(
            header,
            Request::Run {
                id: 42,
                task: "demo::Square".into(),
                types: 7,
                fds: 0,
            }
        );
        assert_eq!(codec::decode::<u64>(&frame[..payload_len]).unwrap(), 12345);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let frame = run_frame();
        for cut in 0..frame.len() {
            let short = &frame[..cut];
            assert!(
                decode::<Request>(short).is_err(),
                "a frame cut to {cut} bytes decoded"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A small xorshift generator: deterministic, so a failure can be replayed.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut decoded = 0;
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && len >= LEN {
                // Make the length field plausible so the header decoder itself is exercised.
                let header_len = (next() % (len as u64 - LEN as u64 + 1)) as u32;
                bytes[len - LEN..].copy_from_slice(&header_len.to_le_bytes());
            }
            if decode::<Response>(&bytes).is_ok() {
                decoded += 1;
            }
        }
        // Random bytes almost never form a valid header; most must be rejected.
        assert!(decoded < 2_000, "{decoded} garbage frames decoded");
    }

    /// A `Ready` laid out by a later version, with fields this one does not know.
    fn future_ready(protocol: u32) -> Vec<u8> {
        header_only(&(0u32, protocol, "9.0.0".to_owned(), [1u8, 2, 3]))
    }

    #[test]
    fn the_protocol_of_any_version_s_ready_is_read() {
        let ours = header_only(&Response::Ready {
            protocol: PROTOCOL,
            release: RELEASE.into(),
        });
        assert_eq!(ready_protocol(&ours), Ok(()));
        let older = header_only(&Response::Ready {
            protocol: 1,
            release: "0.0.1".into(),
        });
        assert_eq!(ready_protocol(&older), Err(Some(1)));
        assert_eq!(ready_protocol(&future_ready(77)), Err(Some(77)));
        // Not a `Ready`, or not a frame: no protocol to tell.
        let skipped = header_only(&Response::Skipped { id: 3 });
        assert_eq!(ready_protocol(&skipped), Err(None));
        assert_eq!(ready_protocol(&[0, 1]), Err(None));
        assert_eq!(ready_protocol(&[0xde, 0xad, 0xbe, 0xef, 0xff]), Err(None));
    }

    #[test]
    fn the_protocol_of_a_setup_is_read_from_its_start() {
        let setup = Request::Setup {
            protocol: 41,
            memory_limit: None,
            core_dumps: true,
            has_context: true,
        };
        let frame = encode(&setup, |buf| {
            buf.extend_from_slice(b"context");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(setup_protocol(&frame), Some(41));
        assert_eq!(setup_protocol(&header_only(&Request::Shutdown)), None);
        assert_eq!(setup_protocol(&[1, 2]), None);
    }

    #[test]
    fn a_length_past_the_frame_is_rejected() {
        let mut frame = run_frame();
        let n = frame.len();
        frame[n - LEN..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Request>(&frame),
            Err(FrameError::BadLength { .. })
        ));
    }
}
