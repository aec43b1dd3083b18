//! [`SharedSlice`]: a big array that goes to a worker and back without being copied.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::SharedMemory;
use crate::wire::fds;

/// An array of plain numbers (`f64`, `u8`, `[i32; 4]`, any [`Pod`] type, which a type
/// of your own gets with `bytemuck`'s derive) in shared memory, for big data in tasks
/// and outputs: it crosses to a worker and back without being encoded or copied.
///
/// [`Pod`]: https://docs.rs/bytemuck/1/bytemuck/trait.Pod.html
///
/// It lives in a sealed memory file (`memfd`): when a task holding one is sent, the
/// frame carries the file's descriptor (`SCM_RIGHTS`) and the encoding holds only its
/// index and length; the worker maps the same memory. A task can change the array in
/// place and return it, or return a new one; the parent maps the output's the same way.
/// The size is sealed, so neither side can shrink the memory under the other.
///
/// ```no_run
/// use procpool::{BoxError, SharedSlice, Task};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Scale(SharedSlice<f64>);
///
/// impl Task for Scale {
///     const NAME: &'static str = "example::Scale";
///     type Output = SharedSlice<f64>;
///     fn run(self) -> Result<SharedSlice<f64>, BoxError> {
///         let mut data = self.0;
///         data.iter_mut().for_each(|x| *x *= 2.0);
///         Ok(data)
///     }
/// }
/// procpool::register!(Scale);
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// procpool::init();
/// let pool = procpool::Pool::new()?;
/// let data = SharedSlice::from_slice(&vec![1.5f64; 8 << 20])?;
/// let doubled = pool.submit(Scale(data)).map_err(procpool::TaskError::from)?.wait()?;
/// assert_eq!(doubled[7], 3.0);
/// # Ok(())
/// # }
/// ```
///
/// Where it travels: in a task given to [`Pool::submit`](crate::Pool::submit) or
/// [`try_submit`](crate::Pool::try_submit) and in that task's output, and in the tasks
/// of a [`map`](crate::Pool::map), at most 32 per value. Anywhere else (a map's
/// outputs, the pool's context, another serializer) encoding or decoding it fails with
/// a codec error that says so. To have many tasks read the same array, make it a
/// [`FrozenSlice`](crate::FrozenSlice) with [`freeze`](SharedSlice::freeze).
///
/// It is shared, not copied: a task retried after its worker died sees the memory as
/// the lost attempt left it.
///
/// Within one process a `SharedSlice` is an ordinary owned array: procpool maps each
/// memory file once per decoded frame (the same file twice in one task, or in one
/// batch of a map, is refused) and unmaps its own copy of a task's array once sent.
/// What Rust cannot see is the other process: a worker that kept a mapping of an
/// output it returned (a thread of its own, a task that leaked it) could still write
/// to it while the parent reads it.
/// Treat the contents of a shared array like any input from a worker: the parent
/// trusts its size (sealed, checked), not its contents.
pub struct SharedSlice<T: Pod> {
    /// `None` for an empty array, which needs no memory.
    memory: Option<SharedMemory>,
    len: usize,
    elem: PhantomData<T>,
}

// SAFETY: shared access only hands out `&[T]`, as a `Vec<T>` would. (`Send` follows
// from `SharedMemory`'s.)
unsafe impl<T: Pod + Sync> Sync for SharedSlice<T> {}

impl<T: Pod> SharedSlice<T> {
    /// A new array of `len` zeros. Memory pages are allocated when first touched.
    ///
    /// # Errors
    /// The memory file cannot be made or mapped (out of memory, too many open files), or
    /// `len` elements of `T` overflow the address space.
    pub fn zeroed(len: usize) -> io::Result<SharedSlice<T>> {
        let bytes = byte_len::<T>(len)?;
        const { assert_fits_a_page::<T>() };
        let memory = match bytes {
            0 => None,
            _ => Some(SharedMemory::create_sealed("procpool-shared", bytes)?),
        };
        Ok(SharedSlice {
            memory,
            len,
            elem: PhantomData,
        })
    }

    /// A new array holding a copy of `data`.
    ///
    /// # Errors
    /// As for [`zeroed`](SharedSlice::zeroed).
    pub fn from_slice(data: &[T]) -> io::Result<SharedSlice<T>> {
        let mut shared = SharedSlice::zeroed(data.len())?;
        shared.copy_from_slice(data);
        Ok(shared)
    }

    /// The memory and the length, taken apart (for `freeze`, beside `FrozenSlice`).
    pub(crate) fn into_parts(self) -> (Option<SharedMemory>, usize) {
        (self.memory, self.len)
    }

    /// The array's bytes. In this process no other value maps the same memory (made
    /// here, or taken once per decoded value); another process's writes are the
    /// caveat in the type's docs.
    fn bytes(&self) -> &[u8] {
        match &self.memory {
            Some(m) => m.bytes(self.len * std::mem::size_of::<T>()),
            None => &[],
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len * std::mem::size_of::<T>();
        match &mut self.memory {
            Some(m) => m.bytes_mut(len),
            None => &mut [],
        }
    }
}

/// Elements must have a size (a zero-sized one would need no memory, and so no
/// mapping to hand out), and an alignment the page-aligned mapping provides.
const fn assert_fits_a_page<T>() {
    assert!(
        std::mem::size_of::<T>() > 0,
        "SharedSlice elements need a size"
    );
    assert!(
        std::mem::align_of::<T>() <= 4096,
        "SharedSlice elements align to a page at most"
    );
}

fn byte_len<T>(len: usize) -> io::Result<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .filter(|&bytes| bytes <= isize::MAX as usize)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "array too large"))
}

impl<T: Pod> Deref for SharedSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self.memory {
            // The mapping is page-aligned and `T` aligns to a page at most, so the cast
            // never fails on alignment.
            Some(_) => bytemuck::cast_slice(self.bytes()),
            None => &[],
        }
    }
}

impl<T: Pod> DerefMut for SharedSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self.memory {
            Some(_) => bytemuck::cast_slice_mut(self.bytes_mut()),
            None => &mut [],
        }
    }
}

impl<T: Pod> fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSlice")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The encoding of a shared array, `SharedSlice` or `FrozenSlice`: the index of its
/// memory's descriptor in the frame's table (`None` for an empty array) and the number
/// of elements.
#[derive(Serialize, Deserialize)]
#[serde(rename = "SharedArray")]
struct Wire {
    fd: Option<u32>,
    len: u64,
}

/// Encodes an array of `len` elements whose memory, if it has any, `put` puts in the
/// frame's table (returning its index there).
pub(crate) fn encode<S: Serializer, M>(
    serializer: S,
    memory: Option<M>,
    len: usize,
    put: impl FnOnce(M) -> Result<u32, String>,
) -> Result<S::Ok, S::Error> {
    let fd = memory.map(put).transpose().map_err(S::Error::custom)?;
    Wire {
        fd,
        len: len as u64,
    }
    .serialize(serializer)
}

/// Decodes an array of `T`: its memory, if it has any, taken from the frame's table by
/// `take(index, bytes)`, and its number of elements.
pub(crate) fn decode<'de, T: Pod, D: Deserializer<'de>, M>(
    deserializer: D,
    take: impl FnOnce(u32, usize) -> Result<M, String>,
) -> Result<(Option<M>, usize), D::Error> {
    const { assert_fits_a_page::<T>() };
    let Wire { fd, len } = Wire::deserialize(deserializer)?;
    let len = usize::try_from(len).map_err(D::Error::custom)?;
    let bytes = byte_len::<T>(len).map_err(D::Error::custom)?;
    let memory = match (fd, bytes) {
        (None, 0) => None,
        (None, _) => return Err(D::Error::custom("a shared array without its memory")),
        (Some(index), _) => Some(take(index, bytes).map_err(D::Error::custom)?),
    };
    Ok((memory, len))
}

impl<T: Pod> Serialize for SharedSlice<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encode(serializer, self.memory.as_ref(), self.len, |m| {
            let copy = m.fd().try_clone_to_owned().map_err(|e| e.to_string())?;
            fds::put_fd(copy)
        })
    }
}

impl<'de, T: Pod> Deserialize<'de> for SharedSlice<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (memory, len) = decode::<T, D, _>(deserializer, |index, bytes| {
            let fd = fds::take_fd(index)?;
            SharedMemory::map_sealed(fd, bytes).map_err(|e| format!("shared memory refused: {e}"))
        })?;
        Ok(SharedSlice {
            memory,
            len,
            elem: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;

    #[test]
    fn outside_a_frame_it_does_not_encode() {
        let shared = SharedSlice::from_slice(&[1u16, 2]).unwrap();
        let error = codec::encode_into(&shared, &mut Vec::new()).unwrap_err();
        assert!(error.contains("travels only"), "{error}");
    }

    #[test]
    fn both_ends_of_a_round_trip_map_the_same_memory() {
        let mut sent = SharedSlice::from_slice(&[1.0f64, 2.0, 3.0]).unwrap();
        let mut buf = Vec::new();
        let fds = codec::encode_with_fds(&sent, &mut buf).unwrap();
        assert_eq!(fds.len(), 1);
        let mut got: SharedSlice<f64> = codec::decode_with_fds(&buf, fds).unwrap();
        assert_eq!(&got[..], &[1.0, 2.0, 3.0]);
        got[1] = 20.0;
        assert_eq!(sent[1], 20.0);
        sent[2] = 30.0;
        assert_eq!(got[2], 30.0);
    }

    #[test]
    fn a_descriptor_the_frame_lacks_is_an_error() {
        let shared = SharedSlice::from_slice(&[7u8]).unwrap();
        let mut buf = Vec::new();
        let _fds = codec::encode_with_fds(&shared, &mut buf).unwrap();
        let error = codec::decode_with_fds::<SharedSlice<u8>>(&buf, Vec::new()).unwrap_err();
        assert!(error.contains("did not come with the frame"), "{error}");
    }

    /// Two slices of one value over the same memory would alias: refused.
    #[test]
    fn the_same_memory_twice_in_one_value_is_refused() {
        let shared = SharedSlice::from_slice(&[7u8]).unwrap();
        let mut buf = Vec::new();
        let fds = codec::encode_with_fds(&(&shared, &shared), &mut buf).unwrap();
        assert_eq!(fds.len(), 2);
        let error =
            codec::decode_with_fds::<(SharedSlice<u8>, SharedSlice<u8>)>(&buf, fds).unwrap_err();
        assert!(error.contains("twice"), "{error}");
    }

    /// A `Serialize` that panics mid-value leaves no table behind on the thread.
    #[test]
    fn a_panic_while_encoding_leaves_no_table_set() {
        struct Panics(SharedSlice<u8>);
        impl Serialize for Panics {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let _ = self.0.serialize(s);
                panic!("on purpose");
            }
        }
        let value = Panics(SharedSlice::from_slice(&[1u8]).unwrap());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            codec::encode_with_fds(&value, &mut Vec::new())
        }));
        assert!(caught.is_err());
        let error = codec::encode_into(&value.0, &mut Vec::new()).unwrap_err();
        assert!(error.contains("travels only"), "{error}");
    }
}
