//! Misbehaving workers: an impostor takes its link socket like a worker, then sends
//! frames the protocol does not allow. The frames are written out byte by byte here,
//! from the layout in docs/ARCHITECTURE.md, so this test also pins the wire format.

mod common;

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use procpool::{Launch, Pool, PoolBuilder, TaskError};
use procpool_worker::{MakeShared, Square};

/// The protocol this procpool speaks (`wire::frame::PROTOCOL`).
const PROTOCOL: u8 = 4;

/// `Response::Ready { protocol, release }`: variant 0, the protocol (one byte while
/// under 251), the release as a string (its length, then its bytes).
fn ready(protocol: u8, release: &str) -> Vec<u8> {
    let mut header = vec![0, protocol, release.len() as u8];
    header.extend_from_slice(release.as_bytes());
    header
}
/// `Response::Output { id: 7, fds: 0 }` with an empty payload: no task #7 was sent.
const OUTPUT_FOR_TASK_7: &[u8] = &[1, 7, 0, 3, 0, 0, 0];
/// A header length that points past the start of the frame.
const GARBAGE: &[u8] = &[0xde, 0xad, 0xbe, 0xef, 0xff];

#[test]
#[ignore = "the impostor worker that the tests below start"]
fn impostor() {
    let fd: i32 = std::env::var("PROCPOOL_WORKER")
        .expect("started by a pool")
        .parse()
        .unwrap();
    let mode = std::env::var("IMPOSTOR_MODE").expect("mode set by the test");
    // SAFETY: the pool made this descriptor for the worker and named it in our
    // environment; nothing else in this process uses it.
    let mut link = unsafe { UnixStream::from_raw_fd(fd) };
    let mut incoming = link.try_clone().unwrap();
    // Returns the frame's header: the frame ends with it and its length.
    let mut recv = || {
        let mut len = [0u8; 4];
        incoming.read_exact(&mut len).unwrap();
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        incoming.read_exact(&mut frame).unwrap();
        let (rest, header_len) = frame.split_at(frame.len() - 4);
        let header_len = u32::from_le_bytes(header_len.try_into().unwrap()) as usize;
        rest[rest.len() - header_len..].to_vec()
    };
    recv(); // Setup
            // On the stream every frame is preceded by its length, u32 little endian.
    let mut reply = |bytes: &[u8]| {
        link.write_all(&(bytes.len() as u32).to_le_bytes()).unwrap();
        link.write_all(bytes).unwrap();
    };
    if let Ok(log) = std::env::var("IMPOSTOR_LOG") {
        use std::io::Write as _;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(log, "started").unwrap();
    }
    if mode == "garbage-setup" {
        reply(GARBAGE);
    } else if mode == "ready-then-exit" {
        // Ready, then gone before any task: every time it is started.
        reply(&with_length(ready(PROTOCOL, env!("CARGO_PKG_VERSION"))));
        std::thread::sleep(Duration::from_millis(50));
        std::process::exit(0);
    } else if mode == "other-protocol" {
        // A worker built from another procpool version.
        reply(&with_length(ready(PROTOCOL - 1, "0.0.9")));
    } else {
        reply(&with_length(ready(PROTOCOL, env!("CARGO_PKG_VERSION"))));
        let request = recv(); // Run, or Batch for a map
                              // `Request::Batch { id, .. }`: variant 4, then the id (one byte while under 251).
        let batch_id = (request[0] == 4).then(|| request[1]);
        // `Request::Run { id, .. }`: variant 1, then the id.
        let run_id = request[1];
        // The encoding of a `SharedSlice` (descriptor #0, 16 elements), then the header
        // `Response::Output { id, fds: 1 }` and its length.
        let shared_output = [1, 0, 16, 1, run_id, 1, 3, 0, 0, 0];
        match mode.as_str() {
            // `Response::Records { id, count: 2, last: true, nanos: 0 }`, no records: the
            // batch held one task.
            "batch-overcount" => reply(&[4, batch_id.unwrap(), 2, 1, 0, 5, 0, 0, 0]),
            // The same for one task, with three bytes that are not a record.
            "batch-bad-records" => reply(&[9, 9, 9, 4, batch_id.unwrap(), 1, 1, 0, 5, 0, 0, 0]),
            "wrong-id" => reply(OUTPUT_FOR_TASK_7),
            // `Response::Output { id, fds: 2 }`, and no descriptor with it.
            "output-without-fds" => reply(&[1, run_id, 2, 3, 0, 0, 0]),
            // `Response::Output { id, fds: 64 }`: more than any value may carry.
            "output-too-many-fds" => reply(&[1, run_id, 64, 3, 0, 0, 0]),
            // A shared output of 16 `u64` (128 bytes) whose memory breaks the rules.
            "unsealed-memory" => send_with_memory(&link, &shared_output, 4096, false),
            "short-memory" => send_with_memory(&link, &shared_output, 64, true),
            // A length promising 1000 bytes, 4 of them, then the end.
            "cut-frame" => {
                link.write_all(&1000u32.to_le_bytes()).unwrap();
                link.write_all(b"half").unwrap();
                std::process::exit(0);
            }
            _ => reply(GARBAGE),
        }
    }
    // Stay: the parent has to get rid of a misbehaving worker itself.
    std::thread::sleep(Duration::from_secs(60));
}

/// A header followed by its length, u32 little endian: a frame with no payload.
fn with_length(mut header: Vec<u8>) -> Vec<u8> {
    let len = header.len() as u32;
    header.extend_from_slice(&len.to_le_bytes());
    header
}

/// Sends `frame` with the descriptor of a new memory file of `len` bytes, its size
/// sealed or not.
fn send_with_memory(link: &UnixStream, frame: &[u8], len: i64, sealed: bool) {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::{AsRawFd, BorrowedFd};
    let memory = memfd_create("impostor", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    nix::unistd::ftruncate(&memory, len).unwrap();
    if sealed {
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        fcntl(&memory, FcntlArg::F_ADD_SEALS(seals)).unwrap();
    }
    let len_bytes = (frame.len() as u32).to_le_bytes();
    let bufs = [
        std::io::IoSlice::new(&len_bytes),
        std::io::IoSlice::new(frame),
    ];
    let fds = [memory.as_raw_fd()];
    // SAFETY: the link's descriptor stays open while `link` lives.
    let sock = unsafe { BorrowedFd::borrow_raw(link.as_raw_fd()) };
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(sock.as_raw_fd(), &bufs, &cmsgs, MsgFlags::empty(), None).unwrap();
    assert_eq!(sent, 4 + frame.len());
}

fn impostor_pool(mode: &str) -> PoolBuilder {
    procpool_worker::link();
    let exe = std::env::current_exe().unwrap();
    let script = common::script(
        mode,
        &format!(
            "exec '{}' --exact impostor --include-ignored --nocapture -q\n",
            exe.display()
        ),
    );
    Pool::builder()
        .workers(1)
        .launch(Launch::Binary(script))
        .env("IMPOSTOR_MODE", mode)
        .max_start_failures(1)
}

#[test]
fn a_garbage_answer_is_a_protocol_error() {
    let pool = impostor_pool("garbage-answer").build().unwrap();
    let e = pool.submit(Square(3)).unwrap().wait().unwrap_err();
    assert!(e.is_protocol(), "{e:?}");
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn an_answer_for_another_task_is_a_protocol_error() {
    let pool = impostor_pool("wrong-id").build().unwrap();
    let e = pool.submit(Square(3)).unwrap().wait().unwrap_err();
    assert!(
        matches!(&e, TaskError::Protocol { message } if message.contains("task #7")),
        "{e:?}"
    );
}

#[test]
fn a_garbage_setup_answer_is_a_failed_start() {
    let pool = impostor_pool("garbage-setup").build().unwrap();
    let e = pool.submit(Square(3)).unwrap().wait().unwrap_err();
    assert!(e.is_worker_start(), "{e:?}");
    assert!(e.to_string().contains("malformed"), "{e}");
}

/// A worker built from another procpool version announces its protocol in its
/// `Ready`: its start fails with an error that names both protocols.
#[test]
fn a_worker_of_another_protocol_is_a_start_error_naming_both() {
    let pool = impostor_pool("other-protocol").build().unwrap();
    let e = pool.submit(Square(3)).unwrap().wait().unwrap_err();
    assert!(e.is_worker_start(), "{e:?}");
    let message = e.to_string();
    let theirs = format!("speaks procpool protocol {}", PROTOCOL - 1);
    let ours = format!("this pool speaks protocol {PROTOCOL}");
    assert!(
        message.contains(&theirs) && message.contains(&ours),
        "{message}"
    );
}

/// A worker that says `Ready`, then dies while idle before its first task, every time:
/// each death is a failed start, so the slot backs off and gives up after
/// `max_start_failures` instead of replacing it again and again at once.
#[test]
fn a_worker_that_dies_idle_before_its_first_task_is_a_failed_start() {
    let log = std::env::temp_dir().join(format!("procpool-idle-deaths-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let pool = impostor_pool("ready-then-exit")
        .env("IMPOSTOR_LOG", &log)
        .max_start_failures(3)
        .build()
        .unwrap();
    // Three starts and two back-offs (50 and 100 ms) take well under this.
    std::thread::sleep(Duration::from_secs(3));
    let starts = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();
    let _ = std::fs::remove_file(&log);
    assert_eq!(starts, 3, "the slot started {starts} workers");
    // The slot gave up: the pool refuses tasks rather than spin.
    let e = pool.submit(Square(3)).unwrap_err();
    assert!(e.is_broken(), "{e:?}");
}

#[test]
fn a_frame_cut_off_by_the_worker_exiting_is_a_crash() {
    let pool = impostor_pool("cut-frame").build().unwrap();
    let e = pool.submit(Square(3)).unwrap().wait().unwrap_err();
    assert_eq!(e.exit_code(), Some(0), "{e:?}");
}

#[test]
fn a_protocol_error_is_retried_on_a_fresh_worker() {
    // Every impostor misbehaves, so each retry fails the same way; the point is that
    // each attempt gets a fresh worker and the task still ends with one outcome.
    let pool = impostor_pool("garbage-answer").retries(2).build().unwrap();
    let e = pool.submit(Square(3)).unwrap().wait().unwrap_err();
    assert!(e.is_protocol(), "{e:?}");
}

#[test]
fn a_batch_answer_for_more_tasks_than_sent_is_a_protocol_error() {
    let pool = impostor_pool("batch-overcount").build().unwrap();
    let e = pool.map([Square(3)]).next().unwrap().unwrap_err();
    assert!(
        matches!(&e, TaskError::Protocol { message } if message.contains("2 of its 1")),
        "{e:?}"
    );
}

#[test]
fn a_batch_answer_with_malformed_records_is_a_protocol_error() {
    let pool = impostor_pool("batch-bad-records").build().unwrap();
    let e = pool.map([Square(3)]).next().unwrap().unwrap_err();
    assert!(
        matches!(&e, TaskError::Protocol { message } if message.contains("malformed records")),
        "{e:?}"
    );
}

/// The error of a task whose output, with shared arrays, the impostor in `mode` sends.
fn shared_output_error(mode: &str) -> TaskError {
    let pool = impostor_pool(mode).build().unwrap();
    pool.submit(MakeShared(16)).unwrap().wait().unwrap_err()
}

#[test]
fn an_output_naming_descriptors_it_lacks_or_too_many_is_a_protocol_error() {
    for (mode, words) in [
        ("output-without-fds", "came without its 2 descriptors"),
        ("output-too-many-fds", "names 64 descriptors"),
    ] {
        let error = shared_output_error(mode);
        assert!(error.is_protocol(), "{mode}: {error:?}");
        assert!(error.to_string().contains(words), "{mode}: {error}");
    }
}

/// Shared memory the parent would map is refused unless its size is sealed (a worker
/// could shrink it while the parent reads it, and crash the parent with SIGBUS) and it
/// holds the whole array.
#[test]
fn shared_memory_that_breaks_the_rules_is_refused() {
    for (mode, words) in [
        ("unsealed-memory", "not sealed"),
        ("short-memory", "64 bytes of memory for 128"),
    ] {
        let error = shared_output_error(mode);
        assert!(error.is_codec(), "{mode}: {error:?}");
        assert!(error.to_string().contains(words), "{mode}: {error}");
    }
}
