//! The single home of the value encoding.
//!
//! bincode 3.0.0 is a tombstone and RUSTSEC-2025-0141 marks bincode unmaintained, so we
//! pin 2.0.1 (its serde path, standard config). Nothing outside this file names bincode.

use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::fds::{self, Incoming, Outgoing};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends the encoding of `value` to `buf`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, buf, config())
        .map(drop)
        .map_err(|e| match e {
            // A type's own Serialize error: its words, not bincode's wrapping.
            bincode::error::EncodeError::OtherString(message) => message,
            other => other.to_string(),
        })
}

/// Decodes a value from the start of `bytes`, whatever follows it.
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(value, _)| value)
        .map_err(|e| e.to_string())
}

/// Decodes a whole value from `bytes`; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| match e {
            bincode::error::DecodeError::OtherString(message) => message,
            other => other.to_string(),
        })?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        ));
    }
    Ok(value)
}

/// Like [`encode_into`], for a value that may hold shared buffers: returns the
/// descriptors they put on the side, to go with the frame.
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, String> {
    let mut table = Outgoing::new(fds::MAX_FDS);
    fds::with_outgoing(&mut table, || encode_into(value, buf))?;
    Ok(table.into_fds())
}

/// Like [`encode_into`], for one of the values whose shared buffers go in `table`
/// (the tasks of a map's batch). On error the value leaves nothing behind, neither in
/// `buf` nor in `table`; [`Outgoing::is_full`] then says whether it failed for want of
/// room in the table alone.
pub(crate) fn encode_into_table<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    table: &mut Outgoing,
) -> Result<(), String> {
    let (len, fds) = (buf.len(), table.len());
    let encoded = fds::with_outgoing(table, || encode_into(value, buf));
    if encoded.is_err() {
        buf.truncate(len);
        table.truncate(fds);
    }
    encoded
}

/// Like [`decode`], for a value that may hold shared buffers, whose descriptors are
/// `fds`. Descriptors the value does not name are closed.
pub(crate) fn decode_with_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, String> {
    decode_with_table(bytes, &mut Incoming::new(fds))
}

/// Like [`decode`], for one of the values whose shared buffers' descriptors are in
/// `table` (the tasks of a map's batch).
pub(crate) fn decode_with_table<T: DeserializeOwned>(
    bytes: &[u8],
    table: &mut Incoming,
) -> Result<T, String> {
    fds::with_incoming(table, || decode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let mut buf = Vec::new();
        encode_into(&(7u64, "seven".to_string()), &mut buf).unwrap();
        let back: (u64, String) = decode(&buf).unwrap();
        assert_eq!(back, (7, "seven".to_string()));
        buf.push(0);
        assert!(decode::<(u64, String)>(&buf)
            .unwrap_err()
            .contains("trailing"));
    }

    #[test]
    fn a_types_own_error_keeps_its_words() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no, thank you"))
            }
        }
        assert_eq!(
            encode_into(&Refuses, &mut Vec::new()),
            Err("no, thank you".into())
        );
    }

    #[test]
    fn a_wrong_type_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode_into(&7u8, &mut buf).unwrap();
        assert!(decode::<bool>(&buf).is_err());
        assert!(decode::<String>(&[200]).is_err(), "a length past the end");
    }
}
