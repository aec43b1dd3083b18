//! Memory: regions shared between processes (a sealed `memfd`, mapped), and large
//! zeroed buffers that cost nothing until written.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

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
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
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
    // SAFETY: `layout` has a non-zero size. The pointer, if not null, owns `len`
    // initialised (zero) bytes allocated by the global allocator with the alignment of
    // u8, which is exactly what `Vec::from_raw_parts` needs with capacity `len`.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        if ptr.is_null() {
            return None;
        }
        Some(Vec::from_raw_parts(ptr, len, len))
    }
}
