//! The descriptors that ride with a frame (`SCM_RIGHTS`), and the tables through which
//! a value's shared buffers put theirs on the side as it is encoded ([`Outgoing`]) and
//! take them back as it is decoded ([`Incoming`]).
//!
//! A frame carries one table. A submitted task's frame has its own; a map's batch has
//! one for all its tasks, in which a memory that several tasks share (a
//! `FrozenSlice`'s) stands once. The shared buffers' `Serialize` and `Deserialize` find
//! the table of the value being encoded or decoded on this thread
//! ([`with_outgoing`], [`with_incoming`]); outside one there is no table, and a shared
//! buffer does not encode.

use std::cell::RefCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::sys::SharedMemory;

/// The most descriptors (shared buffers) one value may carry: a task given to
/// `submit`, its output, or one task of a map.
pub(crate) const MAX_FDS: usize = 32;
/// The most descriptors one frame carries: a map's batch is cut before the task that
/// would bring more. The kernel takes 253 in one `SCM_RIGHTS` message; the bound is
/// lower so that a worker, which holds the descriptors of every job sent to it, keeps
/// well within its limit of open files.
pub(crate) const MAX_FRAME_FDS: usize = 64;

/// The descriptors a frame is to carry, gathered as its values are encoded.
#[derive(Debug)]
pub(crate) struct Outgoing {
    fds: Vec<OwnedFd>,
    /// Memories put in the table whole (`FrozenSlice`), each with its index: another
    /// value that holds the same one gets the same index. Holding them keeps their
    /// addresses from being reused by other memories meanwhile.
    shared: Vec<(Arc<SharedMemory>, u32)>,
    /// How many descriptors the table may hold.
    limit: usize,
    /// Where the value being encoded began: it may add at most [`MAX_FDS`].
    value_start: usize,
    /// The value being encoded needed a descriptor past `limit`.
    full: bool,
}

impl Outgoing {
    /// An empty table for up to `limit` descriptors.
    pub(crate) fn new(limit: usize) -> Outgoing {
        Outgoing {
            fds: Vec::new(),
            shared: Vec::new(),
            limit,
            value_start: 0,
            full: false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether the last value encoded into it failed for want of room in the table
    /// (not of a value's own limit): it may fit a table of its own.
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    /// The descriptors, to send with the frame.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.fds.iter().map(AsFd::as_fd).collect()
    }

    pub(crate) fn into_fds(self) -> Vec<OwnedFd> {
        self.fds
    }

    /// Forgets (and closes) what came after the first `len` descriptors: a value whose
    /// encoding failed leaves nothing behind.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.fds.truncate(len);
        self.shared.retain(|&(_, index)| (index as usize) < len);
    }

    /// Room for one more descriptor of the value being encoded, or why there is none.
    fn room(&mut self) -> Result<(), String> {
        if self.fds.len() - self.value_start >= MAX_FDS {
            return Err(format!("a value carries at most {MAX_FDS} shared buffers"));
        }
        if self.fds.len() >= self.limit {
            self.full = true;
            return Err(format!(
                "a frame carries at most {} shared buffers",
                self.limit
            ));
        }
        Ok(())
    }

    fn put(&mut self, fd: OwnedFd) -> Result<u32, String> {
        self.room()?;
        self.fds.push(fd);
        Ok(self.fds.len() as u32 - 1)
    }

    fn put_shared(&mut self, memory: &Arc<SharedMemory>) -> Result<u32, String> {
        if let Some(&(_, index)) = self.shared.iter().find(|(m, _)| Arc::ptr_eq(m, memory)) {
            return Ok(index);
        }
        self.room()?;
        let copy = memory
            .fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        let index = self.put(copy)?;
        self.shared.push((memory.clone(), index));
        Ok(index)
    }
}

/// The descriptors a frame brought, for its values to take as they are decoded.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// By index; a descriptor taken whole (by a `SharedSlice`) leaves `None`.
    fds: Vec<Option<OwnedFd>>,
    /// The memories mapped for `FrozenSlice`s, by the index of their descriptor: every
    /// value that names it shares the one mapping.
    shared: Vec<Option<Arc<SharedMemory>>>,
    /// The memory files taken so far, as (device, inode), and whether read-only: a
    /// memory taken to be written (a `SharedSlice`) must be taken nowhere else in the
    /// frame, or two of its slices would alias.
    taken: Vec<((u64, u64), Access)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Write,
    Read,
}

impl Incoming {
    /// Whether the frame brought no descriptors.
    pub(crate) fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    pub(crate) fn new(fds: Vec<OwnedFd>) -> Incoming {
        Incoming {
            shared: fds.iter().map(|_| None).collect(),
            fds: fds.into_iter().map(Some).collect(),
            taken: Vec::new(),
        }
    }

    /// Notes that the memory file behind `fd` is taken for `access`, unless that
    /// would let a writable slice alias another.
    fn claim(&mut self, fd: BorrowedFd<'_>, access: Access) -> Result<(), String> {
        let file = crate::sys::file_id(fd).map_err(|e| e.to_string())?;
        let clash = self
            .taken
            .iter()
            .any(|&(f, a)| f == file && (a == Access::Write || access == Access::Write));
        if clash {
            return Err("the same shared memory twice in one frame".to_owned());
        }
        self.taken.push((file, access));
        Ok(())
    }

    fn missing(index: u32) -> String {
        format!("shared buffer #{index} did not come with the frame")
    }

    fn take(&mut self, index: u32) -> Result<OwnedFd, String> {
        let fd = self
            .fds
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| Incoming::missing(index))?;
        self.claim(fd.as_fd(), Access::Write)?;
        Ok(fd)
    }

    fn take_shared(&mut self, index: u32, bytes: usize) -> Result<Arc<SharedMemory>, String> {
        let i = index as usize;
        if let Some(Some(memory)) = self.shared.get(i) {
            return match memory.len() >= bytes {
                true => Ok(memory.clone()),
                false => Err(format!("{} bytes of memory for {bytes}", memory.len())),
            };
        }
        let fd = self
            .fds
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| Incoming::missing(index))?;
        self.claim(fd.as_fd(), Access::Read)?;
        let memory = SharedMemory::map_sealed(fd, bytes)
            .map_err(|e| format!("shared memory refused: {e}"))?;
        let memory = Arc::new(memory);
        self.shared[i] = Some(memory.clone());
        Ok(memory)
    }
}

thread_local! {
    /// The table of the value being encoded on this thread: `Some` only inside
    /// [`with_outgoing`].
    static OUTGOING: RefCell<Option<Outgoing>> = const { RefCell::new(None) };
    /// The table of the value being decoded on this thread: `Some` only inside
    /// [`with_incoming`].
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

/// Runs `encode` with `table` as the table of the value it encodes, which may add
/// at most [`MAX_FDS`] descriptors to it.
pub(crate) fn with_outgoing<R>(table: &mut Outgoing, encode: impl FnOnce() -> R) -> R {
    table.value_start = table.fds.len();
    table.full = false;
    let _scope = Scoped::enter(&OUTGOING, table);
    encode()
}

/// Runs `decode` with `table` as the table of the value it decodes.
pub(crate) fn with_incoming<R>(table: &mut Incoming, decode: impl FnOnce() -> R) -> R {
    let _scope = Scoped::enter(&INCOMING, table);
    decode()
}

/// A table lent to this thread for a scope: put back where it came from when the
/// scope ends, even by a panic (a `Serialize` may panic), and the table of an outer
/// scope restored (a nested pool's encode may run inside a task's).
struct Scoped<'a, T: Placeholder + 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    table: &'a mut T,
    outer: Option<T>,
}

/// What stands in a table's place while it is lent.
trait Placeholder {
    fn placeholder() -> Self;
}

impl Placeholder for Outgoing {
    fn placeholder() -> Self {
        Outgoing::new(0)
    }
}

impl Placeholder for Incoming {
    fn placeholder() -> Self {
        Incoming::default()
    }
}

impl<'a, T: Placeholder> Scoped<'a, T> {
    fn enter(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, table: &'a mut T) -> Self {
        let lent = std::mem::replace(table, T::placeholder());
        let outer = key.with(|k| k.borrow_mut().replace(lent));
        Scoped { key, table, outer }
    }
}

impl<T: Placeholder> Drop for Scoped<'_, T> {
    fn drop(&mut self) {
        let outer = self.outer.take();
        if let Some(lent) = self
            .key
            .with(|k| std::mem::replace(&mut *k.borrow_mut(), outer))
        {
            *self.table = lent;
        }
    }
}

/// For a `SharedSlice`'s `Serialize`: puts `fd` (a copy of its own) in the table of
/// the value being encoded and returns its index there. An error outside
/// [`with_outgoing`]: the value is being encoded by something other than procpool's
/// task path.
pub(crate) fn put_fd(fd: OwnedFd) -> Result<u32, String> {
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(table) => table.put(fd),
        None => Err(NOT_HERE.to_owned()),
    })
}

/// For a `FrozenSlice`'s `Serialize`: puts `memory`'s descriptor in the table of the
/// value being encoded, once however many values hold it, and returns its index.
pub(crate) fn put_shared(memory: &Arc<SharedMemory>) -> Result<u32, String> {
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(table) => table.put_shared(memory),
        None => Err(NOT_HERE.to_owned()),
    })
}

/// For a `SharedSlice`'s `Deserialize`: takes the descriptor at `index`, which nothing
/// else in the frame may name.
pub(crate) fn take_fd(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        Some(table) => table.take(index),
        None => Err(NOT_HERE.to_owned()),
    })
}

/// For a `FrozenSlice`'s `Deserialize`: the memory of the descriptor at `index`, of at
/// least `bytes` bytes, mapped once for every value of the frame that names it.
pub(crate) fn take_shared(index: u32, bytes: usize) -> Result<Arc<SharedMemory>, String> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        Some(table) => table.take_shared(index, bytes),
        None => Err(NOT_HERE.to_owned()),
    })
}

/// Whether an encoding failed only for want of a table: the value holds a shared
/// buffer and was encoded outside [`with_outgoing`].
pub(crate) fn is_not_here(message: &str) -> bool {
    message == NOT_HERE
}

const NOT_HERE: &str = "a shared buffer travels only in a task (given to `submit` or to a \
                        map) and in the output of a submitted task; not in a map's \
                        outputs, a pool's context, or another encoder";

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Arc<SharedMemory> {
        Arc::new(SharedMemory::create_sealed("fds-test", 4096).unwrap())
    }

    /// A memory held by many values stands once in a table; a value's own limit and
    /// the table's are told apart, and a failed value can be taken back out.
    #[test]
    fn an_outgoing_table_dedupes_shared_memory_and_keeps_its_limits() {
        let (a, b) = (memory(), memory());
        let mut table = Outgoing::new(3);
        let first = with_outgoing(&mut table, || (put_shared(&a), put_shared(&a)));
        assert_eq!(first, (Ok(0), Ok(0)));
        let second = with_outgoing(&mut table, || (put_shared(&a), put_shared(&b)));
        assert_eq!(second, (Ok(0), Ok(1)));
        assert_eq!(table.len(), 2);
        let mark = table.len();
        let third = with_outgoing(&mut table, || {
            let copy = || a.fd().try_clone_to_owned().unwrap();
            (put_fd(copy()), put_fd(copy()))
        });
        assert_eq!(third.0, Ok(2));
        assert!(third.1.unwrap_err().contains("a frame carries at most 3"));
        assert!(table.is_full());
        table.truncate(mark);
        assert_eq!(table.len(), 2);
        // Outside a table, nothing encodes.
        assert!(put_shared(&a).unwrap_err().contains("travels only"));

        let mut big = Outgoing::new(MAX_FRAME_FDS);
        let many = with_outgoing(&mut big, || {
            (0..=MAX_FDS)
                .map(|_| put_fd(a.fd().try_clone_to_owned().unwrap()))
                .collect::<Vec<_>>()
        });
        let refused = many[MAX_FDS].clone().unwrap_err();
        assert!(refused.contains("a value carries at most 32"), "{refused}");
        assert!(!big.is_full());
    }

    /// A memory named by several values of one frame is mapped once, for reading;
    /// taking it to write as well, or a descriptor the frame lacks, is an error.
    #[test]
    fn an_incoming_table_maps_shared_memory_once_and_refuses_what_it_lacks() {
        let a = memory();
        let copy = || a.fd().try_clone_to_owned().unwrap();
        let mut table = Incoming::new(vec![copy(), copy()]);
        let (x, y) = with_incoming(&mut table, || (take_shared(0, 100), take_shared(0, 4096)));
        assert!(Arc::ptr_eq(&x.unwrap(), &y.unwrap()));
        let too_big = with_incoming(&mut table, || take_shared(0, 4097)).unwrap_err();
        assert!(too_big.contains("bytes of memory for 4097"), "{too_big}");
        // Index 1 is the same memory file: not to be written while read elsewhere.
        let aliased = with_incoming(&mut table, || take_fd(1)).unwrap_err();
        assert!(aliased.contains("twice"), "{aliased}");
        // Mapped for reading, index 0 is no descriptor to take whole.
        let taken = with_incoming(&mut table, || take_fd(0)).unwrap_err();
        assert!(taken.contains("did not come with the frame"), "{taken}");
        let beyond = with_incoming(&mut table, || take_shared(7, 8)).unwrap_err();
        assert!(beyond.contains("#7 did not come"), "{beyond}");
        assert!(take_fd(0).unwrap_err().contains("travels only"));
    }

    /// A panic inside a scope puts the table back and leaves none set on the thread.
    #[test]
    fn a_panic_in_a_scope_gives_the_table_back() {
        let a = memory();
        let mut table = Outgoing::new(MAX_FDS);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_outgoing(&mut table, || {
                put_shared(&a).unwrap();
                panic!("on purpose");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(table.len(), 1);
        assert!(put_shared(&a).unwrap_err().contains("travels only"));
    }
}
