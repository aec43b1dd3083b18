//! The fault matrix with the `procpool-worker` executable as the worker program: exec'd
//! once per worker (`Launch::Binary`) and as a fork server (`Launch::ForkServerBinary`).

#[path = "../../tests/common/mod.rs"]
mod common;

use procpool::{Launch, Pool, PoolBuilder};

fn with(launch: fn(std::path::PathBuf) -> Launch) -> PoolBuilder {
    let worker = env!("CARGO_BIN_EXE_procpool-worker").into();
    Pool::builder().workers(2).launch(launch(worker))
}

mod binary {
    crate::fault_matrix!(super::with(procpool::Launch::Binary));
}

mod fork_server {
    crate::fault_matrix!(super::with(procpool::Launch::ForkServerBinary));

    #[test]
    fn a_killed_fork_server_s_idle_workers_cost_no_task() {
        crate::common::matrix::a_killed_fork_server_s_idle_workers_cost_no_task(super::with(
            procpool::Launch::ForkServerBinary,
        ));
    }
}

/// A fork server built from another procpool version announces its protocol in its
/// first packet (`Ready`, protocol 1 here): the start fails with an error naming both
/// protocols. The stand-in server writes that packet and waits.
#[test]
fn a_fork_server_of_another_protocol_is_a_start_error_naming_both() {
    let server = common::script(
        "old-fork-server",
        "exec python3 -c 'import os, time; \
         os.write(int(os.environ[\"PROCPOOL_FORK_SERVER_FD\"]), bytes([0, 1, 42])); \
         time.sleep(30)'\n",
    );
    let pool = Pool::builder()
        .workers(1)
        .launch(Launch::ForkServerBinary(server))
        .max_start_failures(1)
        .build()
        .unwrap();
    let e = pool
        .submit(procpool_worker::Square(3))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(e.is_worker_start(), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains("speaks procpool protocol 1")
            && message.contains("this pool speaks protocol 4"),
        "{message}"
    );
}

/// Jobs taken back from behind a hung task wait on the pool's hand-back channel. If the
/// hung task's slot then can no longer start workers (the worker binary is gone) and
/// gives up, the jobs still get their outcome: `WorkerStart`, not a wait forever.
#[test]
fn jobs_handed_back_get_an_outcome_when_the_last_slot_gives_up() {
    let dir = std::env::temp_dir().join(format!("procpool-giveup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("procpool-worker");
    std::fs::copy(env!("CARGO_BIN_EXE_procpool-worker"), &bin).unwrap();
    let pool = Pool::builder()
        .workers(1)
        .launch(Launch::Binary(bin.clone()))
        .timeout(std::time::Duration::from_millis(500))
        .max_start_failures(2)
        .build()
        .unwrap();
    // Quick tasks first: the slot then sends several ahead of the running one.
    for _ in 0..3 {
        let quick: Vec<_> = (0..200)
            .map(|i| pool.submit(procpool_worker::Fault::Ok(i)).unwrap())
            .collect();
        for handle in quick {
            handle.wait().unwrap();
        }
    }
    let hung = pool.submit(procpool_worker::Fault::Hang).unwrap();
    let behind: Vec<_> = (0..4)
        .map(|i| pool.submit(procpool_worker::Fault::Ok(i)).unwrap())
        .collect();
    std::fs::remove_file(&bin).unwrap();
    assert!(hung.wait().unwrap_err().is_timeout());
    for handle in behind {
        let outcome = handle
            .wait_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("a job behind the hung one got no outcome in 20 s"));
        // Run before the binary went, or failed with the slot: never lost.
        assert!(
            matches!(
                outcome,
                Ok(_) | Err(procpool::TaskError::WorkerStart { .. })
            ),
            "{outcome:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
