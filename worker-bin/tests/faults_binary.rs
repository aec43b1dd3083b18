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
