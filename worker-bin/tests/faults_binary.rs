//! The fault matrix with `Launch::Binary`: workers are the `procpool-worker` executable.

#[path = "../../tests/common/mod.rs"]
mod common;

fn builder() -> procpool::PoolBuilder {
    procpool::Pool::builder()
        .workers(2)
        .launch(procpool::Launch::Binary(
            env!("CARGO_BIN_EXE_procpool-worker").into(),
        ))
}

fault_matrix!(builder());
