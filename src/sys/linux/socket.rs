//! Unix sockets with descriptors riding along (`SCM_RIGHTS`): the stream a worker and
//! its slot talk over, and the packet pair between the pool and the fork server.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Sends what the socket takes now, without waiting and without `SIGPIPE`: the number
/// of bytes sent, 0 if the socket is full. `fds` ride along if anything is sent.
pub(crate) fn send_nonblocking(
    sock: BorrowedFd<'_>,
    bufs: &[io::IoSlice<'_>],
    fds: &[RawFd],
) -> io::Result<usize> {
    send_msg(sock, bufs, fds, false)
}

/// One `sendmsg` that waits for room and may send only part of `bufs`: the number of
/// bytes sent. `fds` go with the first byte.
pub(crate) fn send_blocking(
    sock: BorrowedFd<'_>,
    bufs: &[io::IoSlice<'_>],
    fds: &[RawFd],
) -> io::Result<usize> {
    send_msg(sock, bufs, fds, true)
}

fn send_msg(
    sock: BorrowedFd<'_>,
    bufs: &[io::IoSlice<'_>],
    fds: &[RawFd],
    wait: bool,
) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), bufs, cmsgs, flags, None) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if !wait => return Ok(0),
            Err(e) => return Err(e.into()),
            Ok(n) => return Ok(n),
        }
    }
}

/// Reads from a stream socket into `buf`, keeping any descriptors that came along in
/// `fds` (close-on-exec). `Ok(0)` at end of stream.
///
/// # Errors
/// Descriptors cut off for lack of room are an error: they are gone.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let (n, flags) = recv_keeping_fds(sock, buf, fds)?;
    if flags.contains(nix::sys::socket::MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors sent along were cut off",
        ));
    }
    Ok(n)
}

/// One `recvmsg` into `buf`: the bytes read and the message flags. Descriptors that
/// came along are added to `fds`.
fn recv_keeping_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<(usize, nix::sys::socket::MsgFlags)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    // Room for the most a frame carries, and more: what does not fit is cut off and
    // reported by the caller as an error.
    let mut space = nix::cmsg_space!([RawFd; 2 * crate::wire::fds::MAX_FRAME_FDS]);
    loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => other?,
        };
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel has just installed these descriptors in this
                // process for this message; nothing else knows their numbers.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        return Ok((msg.bytes, msg.flags));
    }
}

/// A connected pair of `SOCK_SEQPACKET` Unix sockets, close-on-exec: message boundaries
/// are kept, and descriptors can ride along with a message.
pub(crate) fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends one packet, with copies of `fds` attached.
pub(crate) fn send_packet(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "sent {n} of {} bytes",
                    bytes.len()
                )))
            }
        }
    }
}

/// Receives one packet into `buf`: its length. The descriptors that came with it are
/// added to `fds`. `Ok(None)` once the other end is closed.
///
/// It allocates nothing (the fork server's loop must not, between forks: each page
/// the server writes to while children share its memory is copied, and the
/// allocator's bookkeeping is spread over several pages). The control data goes
/// through a buffer on the stack, and `fds` is the caller's (with room for them).
///
/// # Errors
/// A packet longer than `buf`, or with more descriptors than the control buffer
/// holds, is an error, not a silent truncation.
pub(crate) fn recv_packet(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Option<usize>> {
    use nix::libc;
    /// Room for the control message of 12 descriptors (a `Spawn` brings three), aligned
    /// as `cmsghdr` must be.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no vectors, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive and
        // writable for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match Errno::result(n) {
            Ok(n) => break n as usize,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // SAFETY: `msg` is the header recvmsg just filled in; CMSG_FIRSTHDR only reads its
    // `msg_control` and `msg_controllen`, and gives the first control message the
    // kernel wrote into `control`, or null if there is none.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is not null, so CMSG_FIRSTHDR or CMSG_NXTHDR found a whole
        // header there, within the `msg.msg_controllen` bytes the kernel wrote into
        // `control`, and aligned for `cmsghdr` (`Control` is, and the kernel pads each
        // message to keep the next one so). Nothing writes `control` while `header`
        // lives.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: `cmsg` is a whole header within `control` (see above); CMSG_DATA
            // only computes the address of its data, which follows it.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            let cmsg_len = header.cmsg_len as usize;
            // SAFETY: CMSG_LEN is arithmetic on its argument alone (the length of a
            // header with no data) and touches no memory.
            let len = cmsg_len - unsafe { libc::CMSG_LEN(0) } as usize;
            for i in 0..len / std::mem::size_of::<RawFd>() {
                // SAFETY: `i` counts the descriptors that fit in this message's
                // `cmsg_len`, so `data` offset by `i` stays within the data the kernel
                // wrote for it, inside `control`.
                let slot = unsafe { data.add(i) };
                // SAFETY: `slot` is within this message's data (above), initialised by
                // the kernel; `read_unaligned` asks no alignment of it.
                let fd = unsafe { slot.read_unaligned() };
                // SAFETY: SCM_RIGHTS data are descriptors the kernel has just installed
                // in this process for this message; nothing else owns them.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `msg` still describes `control` as the kernel left it, and `cmsg` is
        // a header within it; CMSG_NXTHDR gives the next whole header, or null.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet or its descriptors truncated",
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some(n))
}

/// Shuts a socket down both ways: a reader blocked on it, here or at the other end,
/// sees end-of-file.
pub(crate) fn shutdown(sock: BorrowedFd<'_>) -> io::Result<()> {
    use nix::sys::socket::{shutdown, Shutdown};
    match shutdown(sock.as_raw_fd(), Shutdown::Both) {
        Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::fcntl::{fcntl, FcntlArg};

    use super::*;

    /// Packets come whole, with their descriptors, into the caller's buffers; one
    /// longer than the buffer, or with more descriptors than the control buffer
    /// holds, is an error; a closed peer is `None`.
    #[test]
    fn a_packet_is_received_in_place_with_its_descriptors() {
        let (ours, theirs) = packet_pair().unwrap();
        let (pipe_r, pipe_w) = std::io::pipe().unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::with_capacity(4);
        send_packet(
            theirs.as_fd(),
            b"spawn",
            &[pipe_r.as_raw_fd(), pipe_w.as_raw_fd()],
        )
        .unwrap();
        let n = recv_packet(ours.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((n, &buf[..5], fds.len()), (Some(5), &b"spawn"[..], 2));
        // The descriptors are new ones, open in this process.
        assert!(fds.iter().all(|fd| fd.as_raw_fd() != pipe_r.as_raw_fd()));
        assert!(fcntl(&fds[0], FcntlArg::F_GETFD).is_ok());

        fds.clear();
        send_packet(theirs.as_fd(), &[7; 17], &[]).unwrap();
        assert!(recv_packet(ours.as_fd(), &mut buf, &mut fds).is_err());

        let many = [pipe_r.as_raw_fd(); 13];
        send_packet(theirs.as_fd(), b"x", &many).unwrap();
        fds.clear();
        assert!(recv_packet(ours.as_fd(), &mut buf, &mut fds).is_err());

        drop(theirs);
        fds.clear();
        let closed = recv_packet(ours.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(closed, None);
    }
}
