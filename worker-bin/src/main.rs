//! The standalone procpool worker, started by `Launch::Binary`.
//!
//! To build your own worker binary, copy this file: link the crate that registers your
//! tasks (here `procpool_worker`, which carries the demo tasks) and call
//! `procpool::init()` first thing.

fn main() {
    procpool_worker::link();
    procpool::init();
    eprintln!("procpool-worker: this program is started by a procpool Pool (Launch::Binary)");
    std::process::exit(2);
}
