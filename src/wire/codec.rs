//! The single home of the value encoding.
//!
//! bincode 3.0.0 is a tombstone and RUSTSEC-2025-0141 marks bincode unmaintained, so we
//! pin 2.0.1 (its serde path, standard config). Nothing outside this file names bincode.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// The most descriptors (shared buffers) one value may carry: a frame's descriptors go
/// in one `SCM_RIGHTS` message, which the kernel caps at 253, and the receiving end
/// reads them into a fixed buffer.
pub(crate) const MAX_FDS: usize = 32;

thread_local! {
    /// Descriptors the value being encoded on this thread carries, in order: `Some`
    /// only inside [`encode_with_fds`].
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors that came with the value being decoded on this thread: `Some` only
    /// inside [`decode_with_fds`]. Each is taken once.
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

struct Incoming {
    fds: Vec<Option<OwnedFd>>,
    /// The memory files taken so far, as (device, inode): one value must not map the
    /// same memory twice, or two of its slices would alias.
    taken: Vec<(u64, u64)>,
}

/// Like [`encode_into`], for a value that may hold shared buffers: returns the
/// descriptors they put on the side, to go with the frame.
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, String> {
    let table = Scoped::enter(&OUTGOING, Vec::new());
    let encoded = encode_into(value, buf);
    let fds = table.leave();
    encoded.map(|()| fds.unwrap_or_default())
}

/// Like [`decode`], for a value that may hold shared buffers, whose descriptors are
/// `fds`. Descriptors the value does not name are closed.
pub(crate) fn decode_with_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, String> {
    let incoming = Incoming {
        fds: fds.into_iter().map(Some).collect(),
        taken: Vec::new(),
    };
    let _table = Scoped::enter(&INCOMING, incoming);
    decode(bytes)
}

/// A thread-local table set for a scope, the one before it put back when the scope
/// ends, even by a panic (a `Serialize` may panic; a nested pool's encode may run
/// inside a task's).
struct Scoped<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    outer: Option<Option<T>>,
}

impl<T> Scoped<T> {
    fn enter(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, value: T) -> Self {
        let outer = key.with(|k| k.borrow_mut().replace(value));
        Scoped {
            key,
            outer: Some(outer),
        }
    }

    /// Ends the scope, returning the table's contents.
    fn leave(mut self) -> Option<T> {
        let outer = self.outer.take().flatten();
        self.key
            .with(|k| std::mem::replace(&mut *k.borrow_mut(), outer))
    }
}

impl<T> Drop for Scoped<T> {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            self.key.with(|k| *k.borrow_mut() = outer);
        }
    }
}

/// For a shared buffer's `Serialize`: puts `fd` on the side of the value being encoded
/// and returns its index there. An error outside [`encode_with_fds`]: the value is
/// being encoded by something else than procpool's task and output path.
pub(crate) fn put_fd(fd: OwnedFd) -> Result<u32, String> {
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(fds) if fds.len() < MAX_FDS => {
            fds.push(fd);
            Ok(fds.len() as u32 - 1)
        }
        Some(_) => Err(format!("a value carries at most {MAX_FDS} shared buffers")),
        None => Err(NOT_HERE.to_owned()),
    })
}

/// For a shared buffer's `Deserialize`: takes the descriptor at `index`.
pub(crate) fn take_fd(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with(|i| {
        let mut table = i.borrow_mut();
        let Some(incoming) = table.as_mut() else {
            return Err(NOT_HERE.to_owned());
        };
        let fd = incoming
            .fds
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("shared buffer #{index} did not come with the frame"))?;
        let file = crate::sys::file_id(fd.as_fd()).map_err(|e| e.to_string())?;
        if incoming.taken.contains(&file) {
            return Err("the same shared memory twice in one value".to_owned());
        }
        incoming.taken.push(file);
        Ok(fd)
    })
}

const NOT_HERE: &str = "a shared buffer travels only as (part of) a task given to `submit` \
                        or that task's output; not in a map's batches, a pool's context, \
                        or another encoder";

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
