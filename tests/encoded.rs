//! Tasks that arrive as bytes (`EncodedTask`, `Pool::submit_encoded`), as a transport
//! such as the cluster mode's hands them over: they run like any task, only registered
//! ones run, and a bad input is that task's typed error.

use procpool::{decode_output, EncodedTask, Pool, TaskError, TaskErrorKind, TaskOptions};
use procpool_worker::{Fault, Square};

procpool::test_support!();

fn pool() -> Pool {
    procpool_worker::link();
    Pool::builder().workers(2).build().unwrap()
}

#[test]
fn an_encoded_task_runs_and_its_output_decodes_where_the_type_is_known() {
    let pool = pool();
    let task = EncodedTask::encode(&Square(12)).unwrap();
    // What a transport would carry: three plain parts.
    let carried = EncodedTask::new(task.name(), task.types(), task.input().to_vec());
    let bytes = pool
        .submit_encoded(carried, &TaskOptions::new())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(decode_output::<Square>(&bytes), Ok(144));
    // Bytes that are not a whole output are a codec error, not a panic.
    let cut = &bytes[..bytes.len() - 1];
    assert!(decode_output::<Square>(cut).unwrap_err().is_codec());
    let longer = [&bytes[..], &[0]].concat();
    assert!(decode_output::<Square>(&longer).unwrap_err().is_codec());
}

#[test]
fn faults_of_an_encoded_task_are_the_same_typed_errors() {
    let pool = pool();
    let run = |fault: Fault| {
        let task = EncodedTask::encode(&fault).unwrap();
        pool.submit_encoded(task, &TaskOptions::new())
            .unwrap()
            .wait()
    };
    assert_eq!(run(Fault::Segfault).unwrap_err().signal(), Some(11));
    assert_eq!(run(Fault::Exit(7)).unwrap_err().exit_code(), Some(7));
    assert!(run(Fault::Panic("boom".into())).unwrap_err().is_panic());
    let slow = EncodedTask::encode(&Fault::Hang).unwrap();
    let timed = TaskOptions::new().timeout(std::time::Duration::from_millis(300));
    let outcome = pool.submit_encoded(slow, &timed).unwrap().wait();
    assert!(outcome.unwrap_err().is_timeout());
    let after = run(Fault::Ok(5)).unwrap();
    assert_eq!(decode_output::<Fault>(&after), Ok(5));
    assert_eq!(pool.stats().finished.errors(TaskErrorKind::Signaled), 1);
}

#[test]
fn only_registered_tasks_run() {
    let pool = pool();
    let square = EncodedTask::encode(&Square(3)).unwrap();
    let unknown = EncodedTask::new("not::registered", square.types(), square.input().to_vec());
    let outcome = pool
        .submit_encoded(unknown, &TaskOptions::new())
        .unwrap()
        .wait();
    assert!(
        matches!(&outcome, Err(TaskError::UnknownTask { name, .. }) if name == "not::registered"),
        "{outcome:?}"
    );
    let other_types = EncodedTask::new(square.name(), square.types() ^ 1, square.input().to_vec());
    let outcome = pool
        .submit_encoded(other_types, &TaskOptions::new())
        .unwrap()
        .wait();
    assert!(outcome.unwrap_err().is_wrong_types());
    // Neither reached a worker: none was even started for them.
    assert_eq!(pool.stats().worker_starts, 0);
    assert_eq!(pool.stats().finished.errors(TaskErrorKind::UnknownTask), 1);
}

#[test]
fn input_bytes_that_are_not_the_task_end_in_a_codec_error_and_the_worker_goes_on() {
    let pool = pool();
    let square = EncodedTask::encode(&Square(3)).unwrap();
    for garbage in [Vec::new(), vec![0xff; 40], b"not bincode at all".to_vec()] {
        let task = EncodedTask::new(square.name(), square.types(), garbage);
        let outcome = pool
            .submit_encoded(task, &TaskOptions::new())
            .unwrap()
            .wait();
        assert!(
            matches!(
                &outcome,
                Err(TaskError::Codec {
                    side: procpool::Side::Worker,
                    ..
                })
            ),
            "{outcome:?}"
        );
    }
    let fine = pool
        .submit_encoded(square, &TaskOptions::new())
        .unwrap()
        .wait();
    assert_eq!(decode_output::<Square>(&fine.unwrap()), Ok(9));
}

#[test]
fn shared_memory_does_not_leave_the_machine() {
    let slice = procpool::SharedSlice::from_slice(&[1.0f64, 2.0, 3.0]).unwrap();
    let error = EncodedTask::encode(&procpool_worker::DoubleShared(slice)).unwrap_err();
    assert!(error.is_codec(), "{error}");
}

#[test]
fn on_complete_hands_over_the_bytes() {
    let pool = pool();
    let (done, outcomes) = std::sync::mpsc::channel();
    let handle = pool
        .submit_encoded(
            EncodedTask::encode(&Square(4)).unwrap(),
            &TaskOptions::new(),
        )
        .unwrap();
    handle.on_complete(move |outcome| {
        let _ = done.send(outcome);
    });
    let bytes = outcomes.recv().unwrap().unwrap();
    assert_eq!(decode_output::<Square>(&bytes), Ok(16));
}
