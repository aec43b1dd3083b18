//! Waiting for descriptors to be ready (`poll`), again after an interruption.

use std::io;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;

#[cfg(doc)]
use super::socket::recv_packet;

/// Waits up to `timeout` for `fd` to be readable (or closed) or, with `write`, writable:
/// `(readable, writable)`, both false on timeout.
pub(crate) fn wait_ready_for(
    fd: BorrowedFd<'_>,
    write: bool,
    timeout: std::time::Duration,
) -> io::Result<(bool, bool)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // Round up, so a wait of 0.5 ms is not a busy poll of 0 ms.
    let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
    let events = if write {
        PollFlags::POLLIN | PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {
                let got = fds[0].revents().unwrap_or(PollFlags::empty());
                let closed = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
                return Ok((
                    got.intersects(PollFlags::POLLIN | closed),
                    got.contains(PollFlags::POLLOUT),
                ));
            }
        }
    }
}

/// Waits until at least one of `fds` is readable or closed; says which.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags};
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    poll_forever(&mut polls)?;
    Ok(polls.iter().map(has_event).collect())
}

/// [`wait_readable`] for the fork server's loop, without allocating (see
/// [`recv_packet`]): waits on the first `count` of `fds` (at most three).
pub(crate) fn wait_readable_in_place(
    fds: [BorrowedFd<'_>; 3],
    count: usize,
) -> io::Result<[bool; 3]> {
    use nix::poll::{PollFd, PollFlags};
    let mut polls = fds.map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    let polls = &mut polls[..count.min(3)];
    poll_forever(polls)?;
    let mut ready = [false; 3];
    for (r, p) in ready.iter_mut().zip(polls.iter()) {
        *r = has_event(p);
    }
    Ok(ready)
}

/// `poll` without a timeout, again after an interruption.
fn poll_forever(polls: &mut [nix::poll::PollFd<'_>]) -> io::Result<()> {
    loop {
        match nix::poll::poll(polls, nix::poll::PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Whether `poll` reported anything for this descriptor (data, end or error).
fn has_event(poll: &nix::poll::PollFd<'_>) -> bool {
    poll.revents().is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    /// Only the first `count` descriptors are waited on.
    #[test]
    fn waiting_in_place_looks_at_the_first_count_only() {
        let (quiet, _keep) = std::io::pipe().unwrap();
        let (loud, mut loud_w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut loud_w, b"x").unwrap();
        let fds = [loud.as_fd(), quiet.as_fd(), loud.as_fd()];
        assert_eq!(
            wait_readable_in_place(fds, 2).unwrap(),
            [true, false, false]
        );
        assert_eq!(wait_readable_in_place(fds, 3).unwrap(), [true, false, true]);
    }
}
