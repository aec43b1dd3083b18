//! [`FrozenSlice`]: an array in shared memory made read-only, which many tasks can hold
//! at once and a map's batch sends once.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shared::{self, SharedSlice};
use crate::sys::SharedMemory;
use crate::wire::fds;

/// A read-only array of plain numbers in shared memory, cheap to clone: every clone is
/// the same memory. Made from a [`SharedSlice`] with
/// [`freeze`](SharedSlice::freeze).
///
/// It is for data that many tasks read: a [`map`](crate::Pool::map) whose tasks hold
/// clones of one `FrozenSlice` sends its descriptor once per batch, not once per task,
/// and a worker maps it once per batch. Tasks may hold several, different ones too. It
/// travels where a `SharedSlice` does: in a task given to `submit` or to a map, and in
/// a submitted task's output.
///
/// ```no_run
/// use procpool::{BoxError, FrozenSlice, SharedSlice, Task};
/// use serde::{Deserialize, Serialize};
///
/// /// Sums `data[from..to]`.
/// #[derive(Serialize, Deserialize)]
/// struct SumRange {
///     data: FrozenSlice<u64>,
///     from: usize,
///     to: usize,
/// }
///
/// impl Task for SumRange {
///     const NAME: &'static str = "example::SumRange";
///     type Output = u64;
///     fn run(self) -> Result<u64, BoxError> {
///         Ok(self.data[self.from..self.to].iter().sum())
///     }
/// }
/// procpool::register!(SumRange);
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// procpool::init();
/// let pool = procpool::Pool::new()?;
/// let numbers: Vec<u64> = (0..10_000_000).collect();
/// let data = SharedSlice::from_slice(&numbers)?.freeze();
/// let tasks = (0..10_000).map(|i| SumRange {
///     data: data.clone(),
///     from: i * 1000,
///     to: (i + 1) * 1000,
/// });
/// let total: u64 = pool.map(tasks).map(Result::unwrap).sum();
/// assert_eq!(total, numbers.iter().sum());
/// # Ok(())
/// # }
/// ```
///
/// Nothing procpool hands out writes to it: in the parent and in every worker it is
/// `&[T]` only. The [`SharedSlice`] caveat stays: a worker that
/// kept a writable mapping of the memory from before it was frozen could still write
/// to it.
pub struct FrozenSlice<T: Pod> {
    /// `None` for an empty array, which needs no memory.
    memory: Option<Arc<SharedMemory>>,
    len: usize,
    elem: PhantomData<T>,
}

impl<T: Pod> FrozenSlice<T> {
    /// The array of `len` elements in `memory` (which holds at least that many).
    pub(crate) fn new(memory: Option<Arc<SharedMemory>>, len: usize) -> FrozenSlice<T> {
        FrozenSlice {
            memory,
            len,
            elem: PhantomData,
        }
    }
}

impl<T: Pod> SharedSlice<T> {
    /// Makes the array read-only and cheap to clone: a [`FrozenSlice`] over the same
    /// memory, for many tasks (a whole map) to share.
    pub fn freeze(self) -> FrozenSlice<T> {
        let (memory, len) = self.into_parts();
        FrozenSlice::new(memory.map(Arc::new), len)
    }
}

impl<T: Pod> Clone for FrozenSlice<T> {
    fn clone(&self) -> Self {
        FrozenSlice::new(self.memory.clone(), self.len)
    }
}

impl<T: Pod> Deref for FrozenSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.memory {
            // Page-aligned, and `T` aligns to a page at most: the cast never fails on
            // alignment. No one in this process writes to the memory (see the type's
            // docs for other processes).
            Some(m) => bytemuck::cast_slice(m.bytes(self.len * std::mem::size_of::<T>())),
            None => &[],
        }
    }
}

impl<T: Pod> fmt::Debug for FrozenSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrozenSlice")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Serialize for FrozenSlice<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        shared::encode(serializer, self.memory.as_ref(), self.len, fds::put_shared)
    }
}

impl<'de, T: Pod> Deserialize<'de> for FrozenSlice<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (memory, len) = shared::decode::<T, D, _>(deserializer, fds::take_shared)?;
        Ok(FrozenSlice::new(memory, len))
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::codec;
    use crate::SharedSlice;

    use super::*;

    /// Clones of one frozen array in one value go as one descriptor and come back as
    /// one mapping, read-only, with the contents the parent wrote.
    #[test]
    fn clones_cross_as_one_descriptor_and_one_mapping() {
        let frozen = SharedSlice::from_slice(&[1u32, 2, 3]).unwrap().freeze();
        let value = (
            frozen.clone(),
            frozen.clone(),
            FrozenSlice::<u32>::new(None, 0),
        );
        let mut buf = Vec::new();
        let fds = codec::encode_with_fds(&value, &mut buf).unwrap();
        assert_eq!(fds.len(), 1);
        let (a, b, empty): (FrozenSlice<u32>, FrozenSlice<u32>, FrozenSlice<u32>) =
            codec::decode_with_fds(&buf, fds).unwrap();
        assert_eq!(&a[..], &[1, 2, 3]);
        assert!(Arc::ptr_eq(
            a.memory.as_ref().unwrap(),
            b.memory.as_ref().unwrap()
        ));
        assert!(empty.is_empty());
        assert_eq!(format!("{a:?}"), "FrozenSlice { len: 3, .. }");
    }

    /// A length past the memory the frame brought is refused, not read out of bounds.
    #[test]
    fn a_length_past_the_memory_is_an_error() {
        let frozen = SharedSlice::from_slice(&[7u8; 10]).unwrap().freeze();
        let mut buf = Vec::new();
        let fds = codec::encode_with_fds(&frozen, &mut buf).unwrap();
        let mut forged = Vec::new();
        codec::encode_into(&(Some(0u32), 1u64 << 20), &mut forged).unwrap();
        let error = codec::decode_with_fds::<FrozenSlice<u8>>(&forged, fds).unwrap_err();
        assert!(error.contains("bytes of memory for"), "{error}");
        assert!(
            codec::decode::<FrozenSlice<u8>>(&buf).is_err(),
            "no table, no memory"
        );
    }
}
