//! Helpers shared by the integration tests: process inspection and the fault matrix
//! (with the task functions' part of it).

#![allow(dead_code)]

pub(crate) mod functions;
pub(crate) mod matrix;

use std::fs;
use std::time::{Duration, Instant};

/// Whether `pid` is a running (not zombie, not gone) process.
pub(crate) fn is_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub(crate) fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes an executable shell script named `name` in a temporary folder of this test
/// process and returns its path: a stand-in worker binary that misbehaves on purpose.
///
/// Each call gets a file of its own: rewriting a script that another test is running
/// fails with "Text file busy".
pub(crate) fn script(name: &str, body: &str) -> std::path::PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("procpool-test-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{call}"));
    fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Open descriptors of this process.
/// Whether this process has a thread named `name`.
pub(crate) fn has_thread(name: &str) -> bool {
    fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks.flatten().any(|t| {
                fs::read_to_string(t.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
            })
        })
        .unwrap_or(false)
}

pub(crate) fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs this test binary again with `args`, which pick a helper that builds a pool and
/// keeps it (busy or idle); waits until the helper has `expected` descendants (workers,
/// a fork server, processes tasks started), SIGKILLs it, and asserts that every one of
/// them is gone within a few seconds. Prints how long that took.
pub(crate) fn kill_helper_parent(args: &[&str], expected: usize) {
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = parent.id();
    assert!(
        eventually(Duration::from_secs(30), || descendants(pid).len()
            == expected),
        "the helper never had {expected} descendants: {:?}",
        descendants(pid)
    );
    let doomed = descendants(pid);
    let before: Vec<String> = doomed.iter().map(|&p| describe(p)).collect();
    // Let the workers pick up their endless tasks.
    std::thread::sleep(Duration::from_millis(300));
    parent.kill().unwrap();
    parent.wait().unwrap();
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || doomed
            .iter()
            .all(|&p| !is_running(p))),
        "{:?} of {before:?} outlived their SIGKILLed parent {pid}",
        doomed
            .iter()
            .filter(|&&p| is_running(p))
            .map(|&p| describe(p))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "{doomed:?} gone {:?} after the parent's SIGKILL",
        killed.elapsed()
    );
}

/// `pid`, its command and, from `/proc/<pid>/stat`, its state, parent and group: what a
/// failure message needs to tell which process was left behind.
pub(crate) fn describe(pid: u32) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let (name, rest) = stat.rsplit_once(')').unwrap_or((&stat, ""));
    let name = name.split_once('(').map_or(name, |(_, n)| n);
    let fields: Vec<&str> = rest.split_whitespace().take(3).collect();
    match fields[..] {
        [state, parent, group] => {
            format!("{pid} ({name}) state {state}, parent {parent}, group {group}")
        }
        _ => format!("{pid} (gone)"),
    }
}

/// Running descendants of `ancestor`: children, their children, and so on.
pub(crate) fn descendants(ancestor: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![ancestor];
    while let Some(parent) = frontier.pop() {
        let children = children_of(parent);
        frontier.extend(&children);
        found.extend(children);
    }
    found
}

/// Children of this process that are zombies (exited, not reaped).
pub(crate) fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    processes()
        .filter(|p| p.state == 'Z' && p.parent == me)
        .map(|p| p.pid)
        .collect()
}

/// Running children of `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    processes()
        .filter(|p| p.parent == parent && p.state != 'Z' && p.state != 'X')
        .map(|p| p.pid)
        .collect()
}

/// One line of `/proc/<pid>/stat`, the fields the tests look at.
struct Process {
    pid: u32,
    state: char,
    parent: u32,
}

/// Every process on the machine, read from /proc.
fn processes() -> impl Iterator<Item = Process> {
    let entries = fs::read_dir("/proc").into_iter().flatten().flatten();
    entries.filter_map(|entry| {
        let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain spaces; fields follow it.
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let parent = fields.next()?.parse().ok()?;
        Some(Process { pid, state, parent })
    })
}
