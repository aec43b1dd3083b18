//! Misbehaving workers: an impostor speaks the bootstrap correctly, then sends frames the
//! protocol does not allow. The frames are written out byte by byte here, from the
//! layout in docs/ARCHITECTURE.md, so this test also pins the wire format.

mod common;

use std::time::Duration;

use ipc_channel::ipc::{self, IpcBytesSender, IpcReceiver, IpcSender};
use procpool::{Launch, Pool, PoolBuilder, TaskError};
use procpool_worker::Square;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Same shape as the library's bootstrap message, so it encodes the same.
#[derive(Serialize, Deserialize)]
enum Hello {
    Ready {
        pid: u32,
        to_worker: IpcBytesSender,
        from_worker: IpcReceiver<ByteBuf>,
    },
    Abort,
}

/// `Response::Ready`: variant 0, then the header length (1) as u32 little endian.
const READY: &[u8] = &[0, 1, 0, 0, 0];
/// `Response::Output { id: 7 }` with an empty payload: no task #7 was sent.
const OUTPUT_FOR_TASK_7: &[u8] = &[1, 7, 2, 0, 0, 0];
/// A header length that points past the start of the frame.
const GARBAGE: &[u8] = &[0xde, 0xad, 0xbe, 0xef, 0xff];

#[test]
#[ignore = "the impostor worker that the tests below start"]
fn impostor() {
    let name = std::env::var("PROCPOOL_WORKER").expect("started by a pool");
    let mode = std::env::var("IMPOSTOR_MODE").expect("mode set by the test");
    let bootstrap = IpcSender::<Hello>::connect(name).unwrap();
    let (to_worker, from_parent) = ipc::bytes_channel().unwrap();
    let (to_parent, from_worker) = ipc::channel::<ByteBuf>().unwrap();
    bootstrap
        .send(Hello::Ready {
            pid: std::process::id(),
            to_worker,
            from_worker,
        })
        .unwrap();
    let _setup = from_parent.recv().unwrap();
    let reply = |bytes: &[u8]| to_parent.send(ByteBuf::from(bytes.to_vec())).unwrap();
    if mode == "garbage-setup" {
        reply(GARBAGE);
    } else {
        reply(READY);
        let _run = from_parent.recv().unwrap();
        reply(if mode == "wrong-id" {
            OUTPUT_FOR_TASK_7
        } else {
            GARBAGE
        });
    }
    // Stay: the parent has to get rid of a misbehaving worker itself.
    std::thread::sleep(Duration::from_secs(60));
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

#[test]
fn a_protocol_error_is_retried_on_a_fresh_worker() {
    // Every impostor misbehaves, so each retry fails the same way; the point is that
    // each attempt gets a fresh worker and the task still ends with one outcome.
    let pool = impostor_pool("garbage-answer").retries(2).build().unwrap();
    let e = pool.submit(Square(3)).unwrap().wait().unwrap_err();
    assert!(e.is_protocol(), "{e:?}");
}
