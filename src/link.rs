//! The connection between the parent and one worker: one Unix stream socket pair, made
//! by the parent before the worker exists, carrying length-prefixed frames.
//!
//! The worker's end is inherited (exec: its number in `PROCPOOL_WORKER`; fork server:
//! passed along with the `Spawn` request), so there is no rendezvous to wait for and
//! no stranger can connect: a worker that dies before it ever speaks shows up as end
//! of stream. On the stream each frame is `u32 length (little endian) | frame`.
//!
//! Measured before choosing it (`cargo bench --bench transport`, between two threads): a
//! socket pair with this framing against ipc-channel, 64-byte round trip ≈50 µs vs
//! ≈73 µs, 4 KiB ≈40 µs vs ≈75 µs, 8 MiB one way ≈3.1 GiB/s vs ≈0.62 GiB/s
//! (ipc-channel's serde path, which procpool used) on this machine.

use std::collections::VecDeque;
use std::io::{self, BufWriter, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::sys;
use crate::wire::fds;

/// Frames at least this long are read straight into a buffer of their own.
const LARGE_FRAME: usize = 64 * 1024;
/// How much one read asks for while small frames are coming in.
const READ_CHUNK: usize = 64 * 1024;

/// Why a receive came back empty.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    /// Nothing arrived in time; the link is still up.
    Timeout,
    /// The worker's end is closed (it exited, or closed the link).
    Closed,
    /// The link failed while the other end may well be alive: a send or receive
    /// refused for want of descriptors or buffers, descriptors no frame names, or a
    /// frame announced larger than can be allocated.
    /// Nothing more can be trusted to cross it.
    Broken(String),
}

/// The parent's end of a link to one worker.
#[derive(Debug)]
pub(crate) struct ParentEnd {
    stream: UnixStream,
    /// Bytes read but not yet handed out are `staged[start..end]`. The buffer is
    /// allocated (and zeroed) once: reads go straight into its free tail.
    staged: Vec<u8>,
    start: usize,
    end: usize,
    /// A large frame being read into its own buffer, and how much of it has arrived.
    large: Option<(Vec<u8>, usize)>,
    /// The worker announced a frame longer than memory allows.
    oversized: bool,
    /// Descriptors that arrived with the frames, oldest first, for the frames that
    /// name them to take ([`take_fds`](ParentEnd::take_fds)).
    fds: Vec<OwnedFd>,
    /// Bytes sent that the socket has not taken yet are `unsent[unsent_at..]`.
    unsent: Vec<u8>,
    unsent_at: usize,
    /// Descriptors that go with unsent bytes: each with the offset in `unsent` of the
    /// frame they belong to, whose first byte must carry them.
    unsent_fds: VecDeque<(usize, Vec<OwnedFd>)>,
    /// A send failed: the other end is gone, and nothing more is sent.
    send_failed: bool,
    /// Why the link failed with the other end still there (see `RecvError::Broken`).
    broken: Option<String>,
}

impl ParentEnd {
    /// A new link: the parent's end, and the descriptor the worker is to inherit.
    pub(crate) fn pair() -> io::Result<(ParentEnd, OwnedFd)> {
        let (ours, theirs) = UnixStream::pair()?;
        Ok((ParentEnd::over(ours), theirs.into()))
    }

    fn over(stream: UnixStream) -> ParentEnd {
        ParentEnd {
            stream,
            staged: Vec::new(),
            start: 0,
            end: 0,
            large: None,
            oversized: false,
            fds: Vec::new(),
            unsent: Vec::new(),
            unsent_at: 0,
            unsent_fds: VecDeque::new(),
            send_failed: false,
            broken: None,
        }
    }

    /// Sends one frame. A worker that has gone away is an error, never a `SIGPIPE`.
    ///
    /// Sending never waits: what the socket does not take now is kept, in order, and
    /// sent by [`recv_timeout`](ParentEnd::recv_timeout) as room frees up. A worker busy
    /// with a long task (or writing a long answer) reads nothing, so a send that waited
    /// for it could wait forever, and the parent would stop watching it meanwhile.
    pub(crate) fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.send_many(&[[frame, &[]]])
    }

    /// Sends several frames, with one system call if the socket takes them all. Each
    /// frame is the concatenation of its two parts (a payload kept apart from its header
    /// is sent without being copied next to it).
    pub(crate) fn send_many(&mut self, frames: &[[&[u8]; 2]]) -> io::Result<()> {
        let lens = frames
            .iter()
            .map(|[a, b]| frame_len(a.len() + b.len()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() * 3);
        for (len, [a, b]) in lens.iter().zip(frames) {
            slices.push(IoSlice::new(len));
            slices.push(IoSlice::new(a));
            if !b.is_empty() {
                slices.push(IoSlice::new(b));
            }
        }
        self.push_out(&mut slices, &[])
    }

    /// Sends one frame (its two parts, as in [`send_many`](ParentEnd::send_many)) with
    /// copies of `fds` attached, for the other end to take with
    /// [`take_fds`](ParentEnd::take_fds) when it reads the frame.
    pub(crate) fn send_with_fds(
        &mut self,
        [a, b]: [&[u8]; 2],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        let len = frame_len(a.len() + b.len())?;
        self.push_out(
            &mut [IoSlice::new(&len), IoSlice::new(a), IoSlice::new(b)],
            fds,
        )
    }

    /// The `n` oldest descriptors that came with the frames read so far; `None` if fewer
    /// have come.
    pub(crate) fn take_fds(&mut self, n: usize) -> Option<Vec<OwnedFd>> {
        (n <= self.fds.len()).then(|| self.fds.drain(..n).collect())
    }

    /// Whether the link failed with the worker still there (see `RecvError::Broken`).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Whether everything sent so far has gone into the socket.
    pub(crate) fn is_flushed(&self) -> bool {
        self.unsent_at == self.unsent.len()
    }

    fn push_out(
        &mut self,
        mut slices: &mut [IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        if self.send_failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let mut fds_left: &[RawFd] = &raw;
        if self.is_flushed() {
            while !slices.is_empty() {
                let n = sys::send_nonblocking(self.stream.as_fd(), slices, fds_left)
                    .map_err(|e| self.failed_send(e))?;
                if n == 0 {
                    break;
                }
                fds_left = &[];
                IoSlice::advance_slices(&mut slices, n);
            }
        }
        if !fds_left.is_empty() {
            // Nothing of this frame went out: its descriptors wait with its bytes.
            let copies = fds
                .iter()
                .map(|fd| fd.try_clone_to_owned())
                .collect::<io::Result<Vec<_>>>()
                .map_err(|e| self.failed_send(e))?;
            self.unsent_fds.push_back((self.unsent.len(), copies));
        }
        for slice in slices.iter() {
            self.unsent.extend_from_slice(slice);
        }
        Ok(())
    }

    /// Notes a failed send: nothing more is sent, and unless the other end is gone,
    /// the link is broken.
    fn failed_send(&mut self, e: io::Error) -> io::Error {
        self.send_failed = true;
        self.unsent.clear();
        self.unsent_at = 0;
        self.unsent_fds.clear();
        if !is_peer_gone(&e) && self.broken.is_none() {
            self.broken = Some(format!("cannot send to the worker: {e}"));
        }
        e
    }

    /// Sends what the socket takes now of what is waiting.
    fn flush_some(&mut self) -> io::Result<()> {
        while !self.is_flushed() {
            // Descriptors go with the first byte of their frame, and no send may run
            // past the start of the next frame that has some.
            let with_fds = self
                .unsent_fds
                .front()
                .filter(|(at, _)| *at == self.unsent_at);
            let raw: Vec<RawFd> = with_fds
                .map(|(_, fds)| fds.iter().map(AsRawFd::as_raw_fd).collect())
                .unwrap_or_default();
            let next = self
                .unsent_fds
                .iter()
                .map(|(at, _)| *at)
                .find(|&at| at > self.unsent_at)
                .unwrap_or(self.unsent.len());
            let rest = [IoSlice::new(&self.unsent[self.unsent_at..next])];
            let n = sys::send_nonblocking(self.stream.as_fd(), &rest, &raw)?;
            if n == 0 {
                return Ok(());
            }
            if !raw.is_empty() {
                self.unsent_fds.pop_front();
            }
            self.unsent_at += n;
        }
        self.unsent.clear();
        self.unsent_at = 0;
        Ok(())
    }

    /// The next frame, waiting up to `timeout` for it to arrive in full.
    pub(crate) fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.take_frame() {
                return Ok(frame);
            }
            if let Some(why) = &self.broken {
                return Err(RecvError::Broken(why.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let flushed = self.is_flushed();
            let readable = match sys::wait_ready_for(self.stream.as_fd(), !flushed, left) {
                Ok((readable, writable)) => {
                    if writable {
                        if let Err(e) = self.flush_some() {
                            // If the worker is gone, what it sent before it went is
                            // still to be read: stop sending and read on to the end of
                            // stream. Otherwise the link is broken (checked above).
                            self.failed_send(e);
                            continue;
                        }
                    }
                    if !readable && !writable {
                        return Err(RecvError::Timeout);
                    }
                    readable
                }
                Err(_) => return Err(RecvError::Closed),
            };
            if !readable {
                continue;
            }
            match self.read_more() {
                Ok(0) => return Err(RecvError::Closed),
                Err(e) if sys::is_reset(&e) => return Err(RecvError::Closed),
                Err(e) => self.broken = Some(format!("cannot receive from the worker: {e}")),
                Ok(_) => {}
            }
        }
    }

    /// A complete frame out of what has been read, if there is one.
    fn take_frame(&mut self) -> Option<Vec<u8>> {
        if self.oversized {
            // Broken (see `broken`): no second try at the allocation.
            return None;
        }
        if let Some((frame, filled)) = &self.large {
            if *filled < frame.len() {
                return None;
            }
            return self.large.take().map(|(frame, _)| frame);
        }
        let unread = &self.staged[self.start..self.end];
        let len = u32::from_le_bytes(unread.get(..4)?.try_into().ok()?) as usize;
        let body = &unread[4..];
        if len >= LARGE_FRAME && body.len() < len {
            // Read the rest straight into the frame's own buffer: no second copy. The
            // buffer is lazily zeroed memory, so a length the worker never follows up
            // costs address space, not memory; one that cannot be had closes the link.
            let Some(mut frame) = sys::zeroed_bytes(len) else {
                self.oversized = true;
                self.broken = Some(format!(
                    "a frame of {len} bytes announced, more than can be allocated here"
                ));
                return None;
            };
            frame[..body.len()].copy_from_slice(body);
            self.large = Some((frame, body.len()));
            self.start = 0;
            self.end = 0;
            return None;
        }
        let frame = body.get(..len)?.to_vec();
        self.start += 4 + len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Some(frame)
    }

    fn read_more(&mut self) -> io::Result<usize> {
        if let Some((frame, filled)) = &mut self.large {
            let n = read_retrying(&mut self.stream, &mut frame[*filled..], &mut self.fds)?;
            *filled += n;
            return Ok(n);
        }
        if self.staged.is_empty() {
            // Room for a whole small frame (under LARGE_FRAME) after any partial one.
            self.staged = vec![0; 2 * READ_CHUNK];
        }
        if self.start > 0 {
            self.staged.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // A frame too long to fit went to its own buffer in `take_frame`, so there is room.
        debug_assert!(self.end < self.staged.len());
        let n = read_retrying(
            &mut self.stream,
            &mut self.staged[self.end..],
            &mut self.fds,
        )?;
        self.end += n;
        Ok(n)
    }
}

/// Whether a send failed because the other end has closed the link.
pub(crate) fn is_peer_gone(e: &io::Error) -> bool {
    sys::is_peer_gone(e)
}

/// The worker's end of its link to the parent.
#[derive(Debug)]
pub(crate) struct WorkerEnd {
    /// Frames are read the same way at both ends.
    inbound: ParentEnd,
    writer: BufWriter<UnixStream>,
}

impl WorkerEnd {
    /// The link over the socket the parent handed down.
    pub(crate) fn new(socket: OwnedFd) -> io::Result<WorkerEnd> {
        let stream = UnixStream::from(socket);
        let inbound = ParentEnd::over(stream.try_clone()?);
        Ok(WorkerEnd {
            writer: BufWriter::with_capacity(READ_CHUNK, stream),
            inbound,
        })
    }

    /// The `n` oldest descriptors that came with the frames read so far; `None` if
    /// fewer have come.
    pub(crate) fn take_fds(&mut self, n: usize) -> Option<Vec<OwnedFd>> {
        self.inbound.take_fds(n)
    }

    /// Why the link failed while the parent may still be there, if it did.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.inbound.broken.as_deref()
    }

    /// Blocks for the next frame; `None` once the parent is gone or the link broke
    /// ([`broken`](WorkerEnd::broken) says which).
    pub(crate) fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.inbound.recv_timeout(Duration::from_secs(3600)) {
                Ok(frame) => return Some(frame),
                Err(RecvError::Timeout) => continue,
                Err(RecvError::Closed | RecvError::Broken(_)) => return None,
            }
        }
    }

    /// A frame that has already arrived, without waiting: `Some(None)` if there is
    /// none yet, `None` once the parent is gone or the link broke.
    pub(crate) fn try_recv(&mut self) -> Option<Option<Vec<u8>>> {
        match self.inbound.recv_timeout(Duration::ZERO) {
            Ok(frame) => Some(Some(frame)),
            Err(RecvError::Timeout) => Some(None),
            Err(RecvError::Closed | RecvError::Broken(_)) => None,
        }
    }

    /// Writes one frame and sends it at once: an answer held back could be lost with
    /// the worker if the next task crashes it, and its task blamed for the crash.
    pub(crate) fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.writer.write_all(&frame_len(frame.len())?)?;
        self.writer.write_all(frame)?;
        self.writer.flush()
    }

    /// Sends one frame with `fds` attached to its first byte, and closes them.
    pub(crate) fn send_with_fds(&mut self, frame: &[u8], fds: Vec<OwnedFd>) -> io::Result<()> {
        if fds.is_empty() {
            return self.send(frame);
        }
        self.writer.flush()?;
        let len = frame_len(frame.len())?;
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let mut slices = [IoSlice::new(&len), IoSlice::new(frame)];
        let mut rest = &mut slices[..];
        let sent = sys::send_blocking(self.writer.get_ref().as_fd(), rest, &raw)?;
        IoSlice::advance_slices(&mut rest, sent);
        for slice in rest.iter() {
            self.writer.get_mut().write_all(slice)?;
        }
        Ok(())
    }
}

fn frame_len(len: usize) -> io::Result<[u8; 4]> {
    u32::try_from(len).map(u32::to_le_bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {len} bytes is over the 4 GiB limit"),
        )
    })
}

/// Descriptors waiting for their frames beyond this many mean the other end sends
/// descriptors no frame names: the link is closed rather than run out of them.
const MAX_WAITING_FDS: usize = 2 * fds::MAX_FRAME_FDS;

fn read_retrying(
    stream: &mut UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let n = sys::recv_with_fds(stream.as_fd(), buf, fds)?;
    if fds.len() > MAX_WAITING_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors that no frame names",
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (ParentEnd, WorkerEnd) {
        let (parent, theirs) = ParentEnd::pair().unwrap();
        (parent, WorkerEnd::new(theirs).unwrap())
    }

    #[test]
    fn frames_cross_both_ways_small_and_large() {
        let (mut parent, mut worker) = pair();
        let big = vec![9u8; 3 * LARGE_FRAME + 5];
        let echo = std::thread::spawn(move || {
            while let Some(frame) = worker.recv() {
                worker.send(&frame).unwrap();
            }
        });
        for frame in [&b"x"[..], &[][..], &big[..], &b"after"[..]] {
            parent.send(frame).unwrap();
            assert_eq!(parent.recv_timeout(Duration::from_secs(5)).unwrap(), frame);
        }
        drop(parent);
        echo.join().unwrap();
    }

    #[test]
    fn many_small_frames_in_one_read_come_out_one_by_one() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let mut raw = UnixStream::from(theirs);
        let mut bytes = Vec::new();
        for i in 0..100u8 {
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.push(i);
        }
        raw.write_all(&bytes).unwrap();
        for i in 0..100u8 {
            assert_eq!(parent.recv_timeout(Duration::from_secs(5)).unwrap(), [i]);
        }
        assert_eq!(
            parent.recv_timeout(Duration::from_millis(10)),
            Err(RecvError::Timeout)
        );
    }

    #[test]
    fn frames_just_under_the_large_size_straddle_reads_intact() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let mut raw = UnixStream::from(theirs);
        let writer = std::thread::spawn(move || {
            for i in 0..20u8 {
                let frame = vec![i; LARGE_FRAME - 1 - i as usize];
                raw.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
                raw.write_all(&frame).unwrap();
            }
        });
        for i in 0..20u8 {
            let frame = parent.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(frame.len(), LARGE_FRAME - 1 - i as usize);
            assert!(frame.iter().all(|&b| b == i));
        }
        writer.join().unwrap();
    }

    #[test]
    fn a_frame_cut_off_by_the_worker_dying_is_a_closed_link() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let mut raw = UnixStream::from(theirs);
        raw.write_all(&100u32.to_le_bytes()).unwrap();
        raw.write_all(b"only part").unwrap();
        drop(raw);
        assert_eq!(
            parent.recv_timeout(Duration::from_secs(5)),
            Err(RecvError::Closed)
        );
    }

    #[test]
    fn a_send_never_waits_for_a_worker_that_is_not_reading() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let big = vec![5u8; 8 << 20];
        // Far more than the socket holds, and nobody reads yet: it returns at once.
        parent.send(&big).unwrap();
        parent.send(b"second").unwrap();
        assert!(!parent.is_flushed());
        let mut worker = WorkerEnd::new(theirs).unwrap();
        let echo = std::thread::spawn(move || {
            let first = worker.recv().unwrap();
            assert_eq!(worker.recv().unwrap(), b"second");
            worker.send(&first[..3]).unwrap();
            first.len()
        });
        // Waiting for the answer pushes out the rest, in order.
        assert_eq!(
            parent.recv_timeout(Duration::from_secs(20)).unwrap(),
            [5, 5, 5]
        );
        assert!(parent.is_flushed());
        assert_eq!(echo.join().unwrap(), big.len());
    }

    #[test]
    fn a_descriptor_sent_with_a_frame_reaches_the_worker() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let mut worker = WorkerEnd::new(theirs).unwrap();
        let mut memory = sys::SharedMemory::create_sealed("link-test", 4096).unwrap();
        memory.write_at(100, &[42]);
        parent.send(b"before").unwrap();
        parent
            .send_with_fds([b"wi", b"th"], &[memory.fd()])
            .unwrap();
        assert_eq!(worker.recv().unwrap(), b"before");
        assert_eq!(worker.recv().unwrap(), b"with");
        let fd = worker.take_fds(1).unwrap().pop().unwrap();
        let theirs = sys::SharedMemory::map(fd).unwrap();
        let mut seen = [0];
        theirs.read_at(100, &mut seen);
        assert_eq!(seen, [42]);
        assert!(worker.take_fds(1).is_none());
    }

    /// A frame with descriptors sent behind bytes the socket has not taken yet: the
    /// descriptors wait with it, and reach the worker with that frame.
    #[test]
    fn descriptors_queued_behind_unsent_bytes_go_with_their_frame() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        let mut worker = WorkerEnd::new(theirs).unwrap();
        let big = vec![7u8; 4 << 20];
        parent.send(&big).unwrap();
        assert!(!parent.is_flushed(), "the socket took 4 MiB at once");
        let mut memory = sys::SharedMemory::create_sealed("link-test", 4096).unwrap();
        memory.write_at(0, &[42]);
        parent
            .send_with_fds([b"wi", b"th"], &[memory.fd()])
            .unwrap();
        parent.send(b"after").unwrap();
        // The queue holds copies of its own.
        drop(memory);
        let reader = std::thread::spawn(move || {
            assert_eq!(worker.recv().unwrap().len(), 4 << 20);
            assert_eq!(worker.recv().unwrap(), b"with");
            let fd = worker.take_fds(1).unwrap().pop().unwrap();
            let theirs = sys::SharedMemory::map(fd).unwrap();
            let mut seen = [0];
            theirs.read_at(0, &mut seen);
            let [seen] = seen;
            assert_eq!(worker.recv().unwrap(), b"after");
            assert!(worker.take_fds(1).is_none());
            worker.send(&[seen]).unwrap();
        });
        // The parent sends what is queued while it waits for an answer.
        assert_eq!(parent.recv_timeout(Duration::from_secs(30)).unwrap(), [42]);
        reader.join().unwrap();
    }

    #[test]
    fn sending_to_a_gone_worker_is_an_error() {
        let (mut parent, theirs) = ParentEnd::pair().unwrap();
        drop(theirs);
        assert!(parent.send(b"anyone?").is_err());
    }
}
