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
    /// Sent once, first: the server runs and is single-threaded.
    Ready { pid: u32 },
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
}
