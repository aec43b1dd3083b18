//! `Launch::ForkServer`: this test binary is re-executed once as the fork server and
//! every worker is forked from it.
//!
//! libtest runs tests on threads, and a fork server must start single-threaded, so this
//! binary has `harness = false` and a `main` that calls `procpool::init()` before any
//! thread exists; libtest-mimic then runs the tests (under cargo test and nextest alike).

mod common;

use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Trial};
use procpool::{Launch, Pool, PoolBuilder, TaskError};
use procpool_worker::{Fault, HoldCStdoutLock, ParentPid, Square, WorkerPid};

fn builder() -> PoolBuilder {
    Pool::builder().workers(2).launch(Launch::ForkServer)
}

/// Workers are children of one fork server, not of this process, and a crash costs a
/// fork from the same server.
fn workers_are_forked_by_one_server() {
    let pool = builder().workers(1).build().unwrap();
    let server = pool.submit(ParentPid).unwrap().wait().unwrap();
    assert_ne!(server, std::process::id());
    assert!(common::is_running(server));
    let first = pool.submit(WorkerPid).unwrap().wait().unwrap();
    assert!(pool
        .submit(Fault::Segfault)
        .unwrap()
        .wait()
        .unwrap_err()
        .is_signal());
    let second = pool.submit(WorkerPid).unwrap().wait().unwrap();
    assert_ne!(first, second, "the crashed worker was replaced");
    assert_eq!(pool.submit(ParentPid).unwrap().wait(), Ok(server));
    drop(pool);
    assert!(
        common::eventually(Duration::from_secs(5), || !common::is_running(server)),
        "the fork server outlived its pool"
    );
    assert!(!common::is_running(second));
    // Other tests run beside this one: a zombie of theirs may be caught mid-reap.
    assert!(common::eventually(Duration::from_secs(5), || {
        common::zombie_children().is_empty()
    }));
}

/// Killing the fork server takes its busy workers with it: their tasks fail with
/// SIGKILL, and the pool starts a new server and goes on.
fn a_killed_server_is_replaced() {
    let pool = builder().workers(1).build().unwrap();
    let server = pool.submit(ParentPid).unwrap().wait().unwrap();
    let busy = pool.submit(Fault::Sleep(30_000)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let error = busy.wait().unwrap_err();
    assert_eq!(error.signal(), Some(9), "{error:?}");
    assert_eq!(pool.submit(Square(9)).unwrap().wait(), Ok(81));
    let new_server = pool.submit(ParentPid).unwrap().wait().unwrap();
    assert_ne!(new_server, server);
    drop(pool);
    // Other tests run beside this one: a zombie of theirs may be caught mid-reap.
    assert!(common::eventually(Duration::from_secs(5), || {
        common::zombie_children().is_empty()
    }));
}

/// A fork server that cannot start (here: the program is not what it claims to be)
/// stops the respawning with a clear error instead of spinning.
fn a_server_that_cannot_start_breaks_the_pool() {
    let fake = common::script("not-a-worker", "echo 'no init here' >&2\nexit 3\n");
    let pool = Pool::builder()
        .workers(1)
        .launch(Launch::ForkServerBinary(fake))
        .max_start_failures(2)
        .build()
        .unwrap();
    let error = pool.submit(Square(1)).unwrap().wait().unwrap_err();
    let TaskError::WorkerStart { message } = &error else {
        panic!("expected a start failure, got {error:?}");
    };
    assert!(message.contains("fork server"), "{message}");
    assert!(message.contains("no init here"), "{message}");
}

/// The parent process the kill tests SIGKILL: a fork server and two workers, one of
/// which left a process running in the background (in its group); with `busy`, both
/// workers then run endless tasks, otherwise they wait for work.
fn parent_helper(busy: bool) {
    let pool = builder().build().unwrap();
    pool.submit(Fault::SpawnSleep(600)).unwrap().wait().unwrap();
    let _busy: Vec<_> = (0..2)
        .filter(|_| busy)
        .map(|_| pool.submit(Fault::Hang).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(120));
}

/// The parent dies by SIGKILL while both forked workers are busy: the fork server, the
/// workers and a task's background process all go.
fn parent_killed_while_forked_workers_are_busy() {
    let args = ["--exact", "busy_parent_helper", "--include-ignored"];
    common::kill_helper_parent(&args, 4);
}

/// The same with both forked workers idle, waiting for a task when their parent dies.
fn parent_killed_while_forked_workers_are_idle() {
    let args = ["--exact", "idle_parent_helper", "--include-ignored"];
    common::kill_helper_parent(&args, 4);
}

/// Run by `first_workers_forked_from_a_single_threaded_program` as the parent it
/// kills: builds its pool while still single-threaded, so its first workers are forked
/// from this very process, checks them, has one replaced (by a fork server, re-executed
/// for it), then keeps two workers busy, or with `busy` false leaves them idle.
fn direct_fork_parent(busy: bool) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let me = std::process::id();
    let secret = std::env::temp_dir().join(format!("procpool-secret-{me}"));
    let _open = std::fs::File::create(&secret).unwrap();
    // A program that blocks a signal and handles another: its workers must do neither.
    extern "C" fn ignore_term(_: i32) {}
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGUSR1);
    blocked.thread_block().unwrap();
    let handler = SigAction::new(
        SigHandler::Handler(ignore_term),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing.
    unsafe { sigaction(Signal::SIGTERM, &handler) }.unwrap();
    let pool = builder().build().unwrap();
    let fds_of = |pid: u32| -> Vec<_> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Both workers are our children already, copies of this program: no exec, no
    // server. Settled, each holds its three standard streams and its link only (two
    // descriptors: one reads, one writes).
    let first = common::children_of(me);
    assert_eq!(first.len(), 2, "{first:?}");
    for &worker in &first {
        let cmdline = std::fs::read(format!("/proc/{worker}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("direct-fork-parent"),
            "worker {worker} was not forked from this process"
        );
        let mut fds = fds_of(worker);
        assert!(
            common::eventually(Duration::from_secs(10), || {
                fds = fds_of(worker);
                fds.len() <= 5
            }),
            "worker {worker} holds more than it needs: {fds:?}"
        );
        assert!(!fds.contains(&secret), "{fds:?}");
        assert_eq!(
            std::fs::read_link(format!("/proc/{worker}/fd/0")).unwrap(),
            std::path::Path::new("/dev/null")
        );
        let status = std::fs::read_to_string(format!("/proc/{worker}/status")).unwrap();
        let mask = |field: &str| {
            let line = status.lines().find(|l| l.starts_with(field)).unwrap();
            u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0, "worker {worker} blocks signals");
        let term = 1u64 << (Signal::SIGTERM as i32 - 1);
        assert_eq!(
            mask("SigCgt:") & term,
            0,
            "worker {worker} kept a SIGTERM handler"
        );
    }
    assert_eq!(pool.submit(ParentPid).unwrap().wait(), Ok(me));
    // The replacement comes from a fork server, which holds none of our files either.
    assert!(pool
        .submit(Fault::Segfault)
        .unwrap()
        .wait()
        .unwrap_err()
        .is_signal());
    let parents: Vec<u32> = (0..2)
        .map(|_| pool.submit(ParentPid).unwrap())
        .map(|h| h.wait().unwrap())
        .collect();
    assert_eq!(pool.submit(Square(4)).unwrap().wait(), Ok(16));
    // The crashed worker's slot may still be starting the server that replaces it.
    let mut server = None;
    assert!(
        common::eventually(Duration::from_secs(10), || {
            server = common::children_of(me)
                .into_iter()
                .find(|pid| !first.contains(pid));
            server.is_some()
        }),
        "no fork server among {:?}",
        common::children_of(me)
    );
    let server = server.expect("found above");
    // It may still be between its fork and its exec, holding what we hold.
    assert!(
        common::eventually(Duration::from_secs(10), || !fds_of(server)
            .contains(&secret)),
        "server {server} holds {:?}",
        fds_of(server)
    );
    assert!(
        parents.iter().all(|&p| p == me || p == server),
        "{parents:?}: neither this process ({me}) nor the server ({server})"
    );
    pool.submit(Fault::SpawnSleep(600)).unwrap().wait().unwrap();
    let _busy: Vec<_> = (0..2)
        .filter(|_| busy)
        .map(|_| pool.submit(Fault::Hang).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(120));
}

/// A pool built while the program is single-threaded forks its first workers from the
/// program itself (no exec). They hold none of the program's descriptors, above all
/// not the lifeline's write end: when the program is SIGKILLed, a first worker, the
/// fork server that replaced the other, its worker and a task's background process all
/// go, whether the workers are busy or idle.
fn first_workers_forked_from_a_single_threaded_program() {
    common::kill_helper_parent(&["direct-fork-parent", "busy"], 4);
    common::kill_helper_parent(&["direct-fork-parent", "idle"], 4);
}

/// Run by `first_workers_of_a_pool_dropped_at_once_are_reaped`: builds a pool while
/// still single-threaded and drops it at once, most likely before its slots claim
/// their first workers; none of them may be left running or unreaped.
fn direct_fork_drop() {
    let me = std::process::id();
    let pool = builder().build().unwrap();
    let first = common::children_of(me);
    assert_eq!(first.len(), 2, "{first:?}");
    drop(pool);
    assert!(
        common::eventually(Duration::from_secs(5), || {
            common::children_of(me).is_empty() && common::zombie_children().is_empty()
        }),
        "left behind: {:?}, zombies {:?}",
        common::children_of(me),
        common::zombie_children()
    );
}

/// A forked worker whose task left a thread holding the C library's stdout lock still
/// exits when it is let go: it does not wait for that lock (here for a minute, against
/// a grace of a minute before the kill). Only for forked workers: an exec'd worker
/// leaves through the C library's `exit`, and whether its flush waits for stream
/// locks differs between C libraries and versions (glibc 2.36 here does not).
fn a_held_c_stdout_lock_does_not_hold_up_a_worker_s_exit() {
    let pool = builder()
        .workers(1)
        .max_tasks_per_worker(1)
        .kill_grace(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = Instant::now();
    let pid = pool.submit(HoldCStdoutLock).unwrap().wait().unwrap();
    pool.join();
    // Generous: an exit that waited for the lock would take the whole minute.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "worker {pid} took {:?} to exit",
        started.elapsed()
    );
}

/// Where `exit_handler_helper`'s handler writes: a file per process that runs it.
static EXIT_MARKS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

extern "C" fn mark_exit() {
    if let Some(dir) = EXIT_MARKS.get() {
        let _ = std::fs::write(dir.join(std::process::id().to_string()), b"");
    }
}

/// Run by `forked_workers_run_no_exit_handlers_of_the_program`: registers a C exit
/// handler, then (still single-threaded) builds a pool, whose first workers are
/// forked from this process, and runs tasks one per worker, so that first workers
/// and fork-server workers both end. Prints the parent pid of each task's worker.
fn exit_handler_helper(dir: &str) {
    EXIT_MARKS.set(dir.into()).unwrap();
    // SAFETY: registers a plain `extern "C"` function with no arguments.
    assert_eq!(unsafe { nix::libc::atexit(mark_exit) }, 0);
    // Buffered by the C library (stdout is a pipe): flushed before the forks, it is
    // written once, not once more by each first worker as it ends.
    // SAFETY: a format without conversions.
    unsafe { nix::libc::printf(c"buffered before the pool\n".as_ptr()) };
    let pool = builder().max_tasks_per_worker(1).build().unwrap();
    let parents: Vec<u32> = pool
        .map((0..6).map(|_| ParentPid))
        .map(Result::unwrap)
        .collect();
    pool.join();
    for parent in parents {
        println!("{parent}");
    }
}

/// A forked worker ends with `_exit`: the C exit handlers of the program it was forked
/// from run once, in the program, and in none of its workers; and what the program had
/// buffered in C stdio before the forks is written once.
fn forked_workers_run_no_exit_handlers_of_the_program() {
    let dir = std::env::temp_dir().join(format!("procpool-exit-marks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (helper, out) = run_helper(&["exit-handler-helper", dir.to_str().unwrap()]);
    let marks: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let parents: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l != "buffered before the pool")
        .map(str::to_owned)
        .collect();
    let before = String::from_utf8_lossy(&out.stdout)
        .matches("buffered before the pool")
        .count();
    assert_eq!(
        before, 1,
        "C stdio bytes of the program written {before} times"
    );
    // First workers (children of the helper) ran tasks, and so did the fork server's.
    assert!(parents.contains(&helper.to_string()), "{parents:?}");
    assert!(
        parents.iter().any(|p| *p != helper.to_string()),
        "{parents:?}"
    );
    assert_eq!(marks, [helper.to_string()], "a worker ran the handler");
}

/// Runs this binary with `args` as a helper, which must succeed: its pid and output.
fn run_helper(args: &[&str]) -> (u32, std::process::Output) {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, out)
}

/// A pool dropped right after its build reaps the workers it forked from the program,
/// claimed by a slot or not.
fn first_workers_of_a_pool_dropped_at_once_are_reaped() {
    for _ in 0..5 {
        run_helper(&["direct-fork-drop"]);
    }
}

fn main() {
    procpool::init();
    procpool_worker::link();
    if std::env::args().nth(1).as_deref() == Some("direct-fork-parent") {
        direct_fork_parent(std::env::args().nth(2).as_deref() == Some("busy"));
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("exit-handler-helper") {
        exit_handler_helper(&std::env::args().nth(2).unwrap());
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("direct-fork-drop") {
        direct_fork_drop();
        return;
    }
    let args = Arguments::from_args();
    let specific: [(&str, fn()); 10] = [
        ("a_killed_fork_server_s_idle_workers_cost_no_task", || {
            common::matrix::a_killed_fork_server_s_idle_workers_cost_no_task(builder())
        }),
        (
            "workers_are_forked_by_one_server",
            workers_are_forked_by_one_server,
        ),
        ("a_killed_server_is_replaced", a_killed_server_is_replaced),
        (
            "a_server_that_cannot_start_breaks_the_pool",
            a_server_that_cannot_start_breaks_the_pool,
        ),
        (
            "parent_killed_while_forked_workers_are_busy",
            parent_killed_while_forked_workers_are_busy,
        ),
        (
            "parent_killed_while_forked_workers_are_idle",
            parent_killed_while_forked_workers_are_idle,
        ),
        (
            "first_workers_forked_from_a_single_threaded_program",
            first_workers_forked_from_a_single_threaded_program,
        ),
        (
            "first_workers_of_a_pool_dropped_at_once_are_reaped",
            first_workers_of_a_pool_dropped_at_once_are_reaped,
        ),
        (
            "forked_workers_run_no_exit_handlers_of_the_program",
            forked_workers_run_no_exit_handlers_of_the_program,
        ),
        (
            "a_held_c_stdout_lock_does_not_hold_up_a_worker_s_exit",
            a_held_c_stdout_lock_does_not_hold_up_a_worker_s_exit,
        ),
    ];
    let mut trials: Vec<Trial> = specific
        .into_iter()
        .map(|(name, test)| trial(name, test))
        .collect();
    trials.extend(
        fault_matrix!(list)
            .into_iter()
            .map(|(name, test)| trial(name, move || test(builder()))),
    );
    #[cfg(feature = "async")]
    trials.push(trial(
        "a_runtime_built_after_init_awaits_forked_workers",
        a_runtime_built_after_init_awaits_forked_workers,
    ));
    for (name, busy) in [("busy_parent_helper", true), ("idle_parent_helper", false)] {
        trials.push(trial(name, move || parent_helper(busy)).with_ignored_flag(true));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// `main` called `init()` before any runtime existed, as the docs ask: a tokio runtime
/// built after it awaits tasks on forked workers, crashes included.
#[cfg(feature = "async")]
fn a_runtime_built_after_init_awaits_forked_workers() {
    use futures::StreamExt;

    let pool = builder().core_dumps(false).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = pool.submit_async(ParentPid).await.unwrap().await.unwrap();
        assert_ne!(server, std::process::id());
        assert_eq!(pool.submit_async(Square(5)).await.unwrap().await, Ok(25));
        let crash = pool.submit_async(Fault::Segfault).await.unwrap().await;
        assert_eq!(crash.unwrap_err().signal(), Some(11));
        let squares: Vec<_> = pool.map((0..100).map(Square)).into_stream().collect().await;
        assert_eq!(squares, (0..100u64).map(|i| Ok(i * i)).collect::<Vec<_>>());
        assert_eq!(
            pool.submit_async(ParentPid).await.unwrap().await,
            Ok(server)
        );
    });
}

/// A test for libtest-mimic, which turns a panic into a failure with the panic's message.
fn trial(name: &str, test: impl FnOnce() + Send + 'static) -> Trial {
    Trial::test(name, move || {
        test();
        Ok(())
    })
}
