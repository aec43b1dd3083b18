//! Messages between a pool and its fork server, one per packet.
//!
//! The pool asks for workers and for signals; the server answers each request for a
//! worker in order and reports every worker's end, with the raw wait status, as it
//! happens. A worker's stderr pipe rides along with `Spawn` as an attached descriptor.

use serde::{Deserialize, Serialize};

use super::codec;

/// Largest packet either side sends; a `SpawnFailed` message is the longest.
pub(crate) const MAX_PACKET: usize = 4096;

/// Pool → fork server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToServer {
    /// Fork a worker. The attached descriptors are its link socket, its stderr and,
    /// if stdout is captured, its stdout.
    Spawn,
    /// Send `signal` to the process group of worker `pid`, if it has not been reaped.
    Signal { pid: u32, signal: i32 },
}

/// Fork server → pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FromServer {
    /// Sent once, first: the server runs, is single-threaded, and speaks `protocol`
    /// (`frame::PROTOCOL`). Always the first variant, with the protocol first.
    Ready { protocol: u32, pid: u32 },
    /// The answer to a `Spawn`: the new worker's pid.
    Spawned { pid: u32 },
    /// The answer to a `Spawn` that failed.
    SpawnFailed { message: String },
    /// Worker `pid` ended; its group was killed and it was reaped. `status` is the raw
    /// wait status.
    Ended { pid: u32, status: i32 },
}

/// Encodes a message into one packet.
pub(crate) fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    encode_into(message, &mut buf);
    buf
}

/// Encodes a message into `buf` (cleared first by the caller), as one packet.
pub(crate) fn encode_into<T: Serialize>(message: &T, buf: &mut Vec<u8>) {
    codec::encode_into(message, buf).expect("fork-server messages always encode");
}

/// The protocol a packet announces if it is a `Ready` of this layout or a later one,
/// read from its fixed start (variant 0, the protocol, the pid). A server from before
/// protocols, whose `Ready` held the pid alone, announces none.
pub(crate) fn ready_protocol(packet: &[u8]) -> Option<u32> {
    match codec::decode_prefix::<(u32, u32, u32)>(packet) {
        Ok((0, protocol, _)) => Some(protocol),
        _ => None,
    }
}

/// Decodes a whole packet.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(packet: &[u8]) -> Result<T, String> {
    codec::decode(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let spawn = ToServer::Signal { pid: 7, signal: 9 };
        assert_eq!(decode::<ToServer>(&encode(&spawn)), Ok(spawn));
        let ended = FromServer::Ended { pid: 7, status: 9 };
        assert_eq!(decode::<FromServer>(&encode(&ended)), Ok(ended));
    }

    #[test]
    fn garbage_and_truncations_are_errors() {
        let packet = encode(&FromServer::SpawnFailed {
            message: "no memory".into(),
        });
        for len in 0..packet.len() {
            assert!(decode::<FromServer>(&packet[..len]).is_err(), "{len} bytes");
        }
        assert!(decode::<ToServer>(&[9, 9, 9]).is_err());
    }

    #[test]
    fn a_ready_of_any_version_tells_its_protocol() {
        let ours = encode(&FromServer::Ready {
            protocol: 7,
            pid: 42,
        });
        assert_eq!(ready_protocol(&ours), Some(7));
        // A later version's `Ready`, with a field this one does not know.
        let later = encode(&(0u32, 9u32, 42u32, "more".to_owned()));
        assert!(decode::<FromServer>(&later).is_err());
        assert_eq!(ready_protocol(&later), Some(9));
        let spawned = encode(&FromServer::Spawned { pid: 3 });
        assert_eq!(ready_protocol(&spawned), None);
        // A server from before protocols: `Ready { pid }` alone. Its pid is no protocol.
        assert_eq!(ready_protocol(&encode(&(0u32, 4242u32))), None);
    }
}
