//! Memory: regions shared between processes (a sealed `memfd`, mapped), and large
//! zeroed buffers that cost nothing until written.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU64;

use nix::fcntl::{fcntl, FcntlArg};

/// A shared memory region on a memory file (`memfd`), mapped read-write: made by one
/// process, mapped by another that received its descriptor.
#[derive(Debug)]
pub(crate) struct SharedMemory {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is owned by this value and lives until it is dropped; access to
// its bytes goes through raw pointers whose users uphold their own rules.
unsafe impl Send for SharedMemory {}
// SAFETY: every method taking `&self` only reads the mapping (`bytes`, `read_at`) or
// touches it through atomics (`word`); writes take `&mut self`. Shared references on
// several threads thus only read, as with `&[u8]`.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// A new zero-filled region of `len` bytes (pages are allocated when first touched)
    /// whose size is sealed: no process that gets its descriptor can shrink it (and so
    /// make another's reads fault with `SIGBUS`) or grow it.
    pub(crate) fn create_sealed(name: &str, len: usize) -> io::Result<SharedMemory> {
        use nix::fcntl::SealFlag;
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        let size = i64::try_from(len).map_err(|_| io::Error::other("region too large"))?;
        nix::unistd::ftruncate(&fd, size)?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        SharedMemory::map(fd)
    }

    /// Maps a region another process made with [`create_sealed`]: refused unless its
    /// size is sealed and it holds at least `len` bytes.
    ///
    /// [`create_sealed`]: SharedMemory::create_sealed
    pub(crate) fn map_sealed(fd: OwnedFd, len: usize) -> io::Result<SharedMemory> {
        use nix::fcntl::SealFlag;
        let seals = SealFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GET_SEALS)?);
        if !seals.contains(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the memory's size is not sealed",
            ));
        }
        let mapped = SharedMemory::map(fd)?;
        if mapped.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes of memory for {len}", mapped.len()),
            ));
        }
        Ok(mapped)
    }

    /// Maps the whole memory file `fd`.
    pub(crate) fn map(fd: OwnedFd) -> io::Result<SharedMemory> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let len = usize::try_from(nix::sys::stat::fstat(&fd)?.st_size)
            .map_err(|_| io::Error::other("negative file size"))?;
        let Some(size) = std::num::NonZeroUsize::new(len) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty region"));
        };
        // SAFETY: a fresh shared mapping of a file we hold, at an address the kernel
        // picks; nothing else in this process aliases it.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )?
        };
        Ok(SharedMemory {
            ptr: ptr.cast(),
            len,
            fd,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte; page-aligned, valid for `len()` bytes while `self` lives.
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The 64-bit word at `index` (of 8-byte words from the start), which both
    /// processes touch only through atomics.
    ///
    /// # Panics
    /// If the word is not wholly within the region.
    pub(crate) fn word(&self, index: usize) -> &AtomicU64 {
        let end = index.checked_add(1).and_then(|n| n.checked_mul(8));
        assert!(
            end.is_some_and(|end| end <= self.len),
            "word {index} out of bounds"
        );
        // SAFETY: word `index` ends within the mapping (checked above), so the offset
        // stays inside that one allocation.
        let word = unsafe { self.as_ptr().cast::<AtomicU64>().add(index) };
        // SAFETY: in bounds (checked above) and aligned (the mapping is page-aligned);
        // the mapping lives as long as the reference; `AtomicU64` has no invalid bit
        // patterns, and every process that maps the region touches these words only
        // through atomics.
        unsafe { &*word }
    }

    /// Copies `bytes` into the region at `offset`. No reference into the region is
    /// made: another process may read it meanwhile and sees the bytes as they land.
    /// `&mut self`: no slice of [`bytes`](Self::bytes) is alive in this process.
    ///
    /// # Panics
    /// If the bytes do not fit the region at `offset`.
    pub(crate) fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset.checked_add(bytes.len());
        assert!(
            end.is_some_and(|end| end <= self.len),
            "write out of bounds"
        );
        // SAFETY: `offset` plus the length is at most the mapping's (checked above), so
        // the pointer stays within the mapping, or one past its end for an empty copy.
        let dest = unsafe { self.as_ptr().add(offset) };
        // SAFETY: the destination is within the mapping (checked above) and cannot
        // overlap `bytes`, a reference Rust holds to memory of its own or to another
        // mapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dest, bytes.len()) };
    }

    /// Copies `out.len()` bytes of the region, from `offset`, into `out`: a copy of
    /// our own, which no other process can change after.
    ///
    /// # Panics
    /// If the bytes asked for are not within the region.
    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) {
        let end = offset.checked_add(out.len());
        assert!(end.is_some_and(|end| end <= self.len), "read out of bounds");
        // SAFETY: `offset` plus the length is at most the mapping's (checked above), so
        // the pointer stays within the mapping, or one past its end for an empty copy.
        let src = unsafe { self.as_ptr().add(offset) };
        // SAFETY: the source is within the mapping (checked above); `out` is memory of
        // our own that cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
    }

    /// The first `len` bytes, for a value that owns the region's contents in this
    /// process (no other value maps the same memory here), as `SharedSlice` does.
    /// Another process that maps it may still write them: the caveat `SharedSlice`
    /// documents.
    ///
    /// # Panics
    /// If `len` is more than the region holds.
    pub(crate) fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.len, "{len} bytes of a region of {}", self.len);
        // SAFETY: `len` bytes of a live mapping (checked above), borrowed for as long
        // as `self` is, which keeps the mapping alive; `&self` keeps this process's
        // writes (through `bytes_mut`) out meanwhile.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), len) }
    }

    /// The first `len` bytes, writable; as [`bytes`](Self::bytes), with `&mut self`
    /// making this the only reference in this process.
    ///
    /// # Panics
    /// If `len` is more than the region holds.
    pub(crate) fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.len, "{len} bytes of a region of {}", self.len);
        // SAFETY: as in `bytes`; `&mut self` rules out any other reference to these
        // bytes in this process while this one lives.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), len) }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, which nothing uses after.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}

/// A buffer of `len` zero bytes, or `None` if that much memory cannot be had. Large
/// buffers come from fresh pages that are zero already, so nothing is written until the
/// buffer is filled.
pub(crate) fn zeroed_bytes(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (`len` is not 0, checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` is not null, so it owns `len` initialised (zero) bytes allocated by
    // the global allocator with the alignment of u8, which is exactly what
    // `Vec::from_raw_parts` needs with capacity `len`.
    Some(unsafe { Vec::from_raw_parts(ptr, len, len) })
}
