//! The [`Task`] trait, and the registry that lets a worker find a task by its name.
//!
//! Registration is link-time (`inventory`): [`register!`](crate::register) next to the
//! type, no hand-kept list. Nothing about the parent's memory layout crosses the wire;
//! only the task's stable [`Task::NAME`] and its serde encoding.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::child::panics;
use crate::error::{Direction, Side, TaskError};
use crate::pool::TaskOptions;
use crate::wire::codec;
use crate::wire::fds::Incoming;
use crate::wire::frame::Failure;

/// The error a task may return: any error, with its `source()` chain kept as text.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A unit of work that runs in a worker process.
///
/// The task value is encoded in the parent, decoded in the worker, and `run` there; the
/// output travels back the same way. Register every task type with
/// [`register!`](crate::register) in code that the worker binary links.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square(u64);
///
/// impl procpool::Task for Square {
///     const NAME: &'static str = "doc::Square";
///     type Output = u64;
///     fn run(self) -> Result<u64, procpool::BoxError> {
///         Ok(self.0 * self.0)
///     }
/// }
/// procpool::register!(Square);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a procpool task",
    label = "a task is a value of a type that implements `procpool::Task`",
    note = "a worker process cannot run a closure or a plain value: put `#[procpool::task]` \
            on a function and run it with `pool.call(function, input)` or \
            `pool.map_fn(function, inputs)`; or define a struct that derives `Serialize` and \
            `Deserialize`, implement `procpool::Task` for it (a stable `NAME`, the \
            `Output`, and `run`), and `procpool::register!` it"
)]
pub trait Task: Serialize + DeserializeOwned + 'static {
    /// The stable name the worker looks the task up by. Keep it unique and unchanged
    /// across builds: a separately built worker binary finds the task only by this name.
    const NAME: &'static str;
    /// What a successful run returns.
    type Output: Serialize + DeserializeOwned + 'static;

    /// Settings this task runs with unless a [`submit_with`](crate::Pool::submit_with) or
    /// a [`map_with`](crate::Pool::map_with) brings its own; the pool's for what they
    /// leave unset. None by default: the pool's settings.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use std::time::Duration;
    /// # #[derive(Serialize, Deserialize)]
    /// # struct Convert(String);
    /// impl procpool::Task for Convert {
    ///     const NAME: &'static str = "doc::Convert";
    ///     type Output = Vec<u8>;
    ///     fn options() -> procpool::TaskOptions {
    ///         procpool::TaskOptions::new().timeout(Duration::from_secs(30)).retries(1)
    ///     }
    ///     fn run(self) -> Result<Vec<u8>, procpool::BoxError> {
    ///         Ok(self.0.into_bytes())
    ///     }
    /// }
    /// ```
    fn options() -> TaskOptions {
        TaskOptions::new()
    }

    /// Runs the task inside a worker process.
    ///
    /// # Errors
    /// An `Err` reaches the caller as [`TaskError::Failed`] with
    /// the error's message and each of its causes.
    fn run(self) -> Result<Self::Output, BoxError>;
}

/// A registered task: its name, its concrete types and its type-erased runner. Made by
/// [`register!`](crate::register); not meant to be built by hand.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    name: &'static str,
    types: TaskTypes,
    run: Runner,
    options: fn() -> TaskOptions,
}

impl Registration {
    #[doc(hidden)]
    pub const fn of<T: Task>() -> Registration {
        Registration {
            name: T::NAME,
            types: TaskTypes::of::<T>(),
            run: run_erased::<T>,
            options: T::options,
        }
    }

    /// The task's `Task::NAME`.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The task's concrete types.
    pub(crate) fn types(&self) -> TaskTypes {
        self.types
    }

    /// The task's own settings (`Task::options`).
    pub(crate) fn options(&self) -> TaskOptions {
        (self.options)()
    }
}

inventory::collect!(Registration);

/// The concrete types of a task, its own and its output's: a generic task has one
/// `NAME` for every instantiation, and these tell them apart.
#[derive(Clone, Copy)]
pub(crate) struct TaskTypes {
    task: fn() -> &'static str,
    output: fn() -> &'static str,
    id: fn() -> TypeId,
}

impl TaskTypes {
    pub(crate) const fn of<T: Task>() -> TaskTypes {
        TaskTypes::pair::<T, T::Output>()
    }

    /// A task type `T` with the output `O`.
    pub(crate) const fn pair<T: 'static, O: 'static>() -> TaskTypes {
        TaskTypes {
            task: std::any::type_name::<T>,
            output: std::any::type_name::<O>,
            id: TypeId::of::<T>,
        }
    }

    /// `Task -> Output`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{} -> {}", (self.task)(), (self.output)())
    }

    /// What crosses the wire: a hash (FNV-1a, the same in every build) of both type
    /// names without their paths (`Double<u32> -> u32`), so that the same types
    /// compiled into another crate, a separately built worker say, still match.
    /// Type names are what such a worker can compare; the standard library does not
    /// promise them stable across compiler versions, so a worker built by another
    /// compiler may refuse a task it could run, and never the other way round.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let task = without_paths((self.task)());
        let output = without_paths((self.output)());
        let names = [task.as_bytes(), &[0], output.as_bytes()];
        for byte in names.into_iter().flatten() {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

/// A type name with every path cut to its last segment:
/// `app::tasks::Double<alloc::vec::Vec<app::Item>>` is `Double<Vec<Item>>`.
fn without_paths(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    // Where the path being read began in `out`.
    let mut path_start = 0;
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("::") {
            out.truncate(path_start);
            rest = after;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        if !(c.is_alphanumeric() || c == '_') {
            path_start = out.len();
        }
    }
    out
}

impl fmt::Debug for TaskTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Registers task types so that worker processes can run them.
///
/// Put it next to the types, in a crate that both the parent and the worker link. A
/// generic task is registered once per instantiation it runs as
/// (`register!(Double<u32>, Double<f64>)`); an instantiation that was not registered
/// ends in [`TaskError::WrongTypes`].
///
/// ```ignore
/// procpool::register!(Square, ParseFile);
/// ```
#[macro_export]
macro_rules! register {
    ($($task:ty),+ $(,)?) => {
        $(
            $crate::__private::inventory::submit! {
                $crate::__private::Registration::of::<$task>()
            }
        )+
    };
}

/// One registration of a name, with its fingerprint worked out once.
struct Entry {
    registration: &'static Registration,
    fingerprint: u64,
}

/// Every registered task by name: one entry per instantiation. The same types
/// registered twice under one name are a bug in the program; the first one wins and
/// [`duplicate_names`] reports the clash.
fn registry() -> &'static HashMap<&'static str, Vec<Entry>> {
    static REGISTRY: OnceLock<HashMap<&'static str, Vec<Entry>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<Entry>> = HashMap::new();
        for registration in inventory::iter::<Registration> {
            let fingerprint = registration.types.fingerprint();
            let entries = map.entry(registration.name).or_default();
            if entries.iter().all(|e| e.fingerprint != fingerprint) {
                entries.push(Entry {
                    registration,
                    fingerprint,
                });
            }
        }
        map
    })
}

/// Names registered more than once for the same types in this binary.
pub(crate) fn duplicate_names() -> Vec<&'static str> {
    let mut seen = HashMap::new();
    for reg in inventory::iter::<Registration> {
        *seen
            .entry((reg.name, reg.types.fingerprint()))
            .or_insert(0usize) += 1;
    }
    let mut dups: Vec<_> = seen
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|((name, _), _)| name)
        .collect();
    dups.sort_unstable();
    dups.dedup();
    dups
}

/// The parent's check before it sends a task: the fingerprint of `T`'s types, or, if
/// the workers run this program (`registry_here`) and it registered `T::NAME` for other
/// types only, the error that says so. Anything else (a name this program did not
/// register, a separate worker binary, which may register more) is left to the worker
/// to judge.
pub(crate) fn fingerprint_of<T: Task>(registry_here: bool) -> Result<u64, TaskError> {
    let types = TaskTypes::of::<T>();
    let Some(entries) = registry().get(T::NAME) else {
        return Ok(types.fingerprint());
    };
    let id = TypeId::of::<T>();
    match entries.iter().find(|e| (e.registration.types.id)() == id) {
        Some(entry) => Ok(entry.fingerprint),
        None if !registry_here => Ok(types.fingerprint()),
        None => Err(TaskError::WrongTypes {
            name: T::NAME.to_owned(),
            submitted: types.describe(),
            registered: described(entries),
            side: Side::Parent,
        }),
    }
}

/// The registration in this program of the task `name` with the types of fingerprint
/// `types`: what a task that arrives encoded, from another machine, must match before it
/// runs. Otherwise the error the task ends in, found on the parent's side.
pub(crate) fn registered(name: &str, types: u64) -> Result<&'static Registration, TaskError> {
    let Some(entries) = registry().get(name) else {
        return Err(TaskError::UnknownTask {
            name: name.to_owned(),
            worker: this_executable(),
        });
    };
    match entries.iter().find(|e| e.fingerprint == types) {
        Some(entry) => Ok(entry.registration),
        None => Err(TaskError::WrongTypes {
            name: name.to_owned(),
            submitted: format!("types of fingerprint {types:016x}"),
            registered: described(entries),
            side: Side::Parent,
        }),
    }
}

/// This program's path, to name it in errors.
fn this_executable() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "<unknown executable>".to_owned())
}

fn described(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.registration.types.describe())
        .collect()
}

/// A registered task's runner: decodes the input, whose shared buffers' descriptors
/// are `fds`, runs the task (panics caught) and appends the encoded output; returns the
/// output's shared buffers (only a submitted task's output may hold any).
pub(crate) type Runner = fn(&[u8], Fds<'_>, &mut Vec<u8>) -> Result<Vec<OwnedFd>, Failure>;

/// Where a task's shared buffers come from, and whether its output may hold some.
#[derive(Debug)]
pub(crate) enum Fds<'a> {
    /// A submitted task: the descriptors of its frame. Its output may hold shared
    /// buffers, which go with the answer's frame.
    Frame(Vec<OwnedFd>),
    /// A task of a map's batch: the batch's table, which all its tasks share. Its
    /// output may hold none (a batch's records carry no descriptors).
    Batch(&'a mut Incoming),
    /// A task of a map's batch that brought no descriptors: decoded without a table,
    /// which costs nothing. Neither it nor its output may hold a shared buffer.
    None,
}

/// The runner of the task `name` whose types have the fingerprint `types`, or the
/// failure every run of it gets.
pub(crate) fn find(name: &str, types: u64) -> Result<Runner, Failure> {
    find_in(registry(), name, types)
}

/// [`find`] in a given registry.
fn find_in(
    registry: &HashMap<&'static str, Vec<Entry>>,
    name: &str,
    types: u64,
) -> Result<Runner, Failure> {
    let Some(entries) = registry.get(name) else {
        return Err(Failure::UnknownTask {
            name: name.to_owned(),
            worker: this_executable(),
        });
    };
    match entries.iter().find(|e| e.fingerprint == types) {
        Some(entry) => Ok(entry.registration.run),
        None => Err(Failure::WrongTypes {
            name: name.to_owned(),
            registered: described(entries),
        }),
    }
}

/// Runs the task `name` (types: `types`) on the encoded `input`, whose shared buffers
/// are `fds`, appending the encoded output to `out`; returns the output's shared
/// buffers.
pub(crate) fn run(
    name: &str,
    types: u64,
    input: &[u8],
    fds: Vec<OwnedFd>,
    out: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, Failure> {
    find(name, types)?(input, Fds::Frame(fds), out)
}

fn run_erased<T: Task>(
    input: &[u8],
    fds: Fds<'_>,
    out: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, Failure> {
    let shares = matches!(fds, Fds::Frame(_));
    // The task's own types run user code at every step (`Deserialize`, `run`,
    // `Display` and `source`, `Serialize`, `Drop`): a panic in any of them is caught
    // here and becomes this task's failure, and the worker goes on. Two catches on
    // the way of a task that succeeds, each with a mark of how far it got; a value is
    // never dropped while a panic unwinds past it, where a second panic, in its
    // `Drop`, would abort the worker.
    let mut decoded = false;
    let ran = panic::catch_unwind(AssertUnwindSafe(|| {
        let task: T = match fds {
            Fds::Frame(fds) => codec::decode_with_fds(input, fds),
            Fds::Batch(table) => codec::decode_with_table(input, table),
            Fds::None => codec::decode(input),
        }
        .map_err(|message| Failure::Codec {
            direction: Direction::ToWorker,
            message,
        })?;
        decoded = true;
        Ok(task.run())
    }));
    let output = match ran {
        Ok(Ok(Ok(output))) => output,
        Ok(Ok(Err(error))) => return Err(failed(error)),
        Ok(Err(failure)) => return Err(failure),
        Err(payload) if !decoded => {
            return Err(Failure::Codec {
                direction: Direction::ToWorker,
                message: panicked_while("decoding", payload),
            })
        }
        Err(payload) => {
            let (message, location) = panics::describe(payload);
            return Err(Failure::Panicked { message, location });
        }
    };
    let start = out.len();
    // Dropped under the catch once encoded; if the encoding panics, under a catch of
    // its own after that one.
    let mut output = Some(output);
    let mut encoded = false;
    let sent = panic::catch_unwind(AssertUnwindSafe(|| {
        let value = output.as_ref().expect("taken only here");
        let fds = match shares {
            true => codec::encode_with_fds(value, out),
            false => codec::encode_into(value, out).map(|()| Vec::new()),
        };
        encoded = true;
        drop(output.take());
        fds
    }));
    if let Some(output) = output.take() {
        drop_quietly(output);
    }
    match sent {
        Ok(Ok(fds)) => Ok(fds),
        Ok(Err(message)) => {
            out.truncate(start);
            Err(Failure::Codec {
                direction: Direction::ToParent,
                message,
            })
        }
        Err(payload) if !encoded => {
            out.truncate(start);
            Err(Failure::Codec {
                direction: Direction::ToParent,
                message: panicked_while("encoding", payload),
            })
        }
        Err(payload) => {
            out.truncate(start);
            let (message, location) = panics::describe(payload);
            Err(Failure::Panicked {
                message: format!("while dropping the output: {message}"),
                location,
            })
        }
    }
}

/// The failure for an error a task returned: its chain of messages, or the panic of
/// its `Display` or `source`, or of its `Drop`, each under a catch of its own.
fn failed(error: BoxError) -> Failure {
    let described = panic::catch_unwind(AssertUnwindSafe(|| chain(&*error)));
    let dropped = panic::catch_unwind(AssertUnwindSafe(move || drop(error)));
    match (described, dropped) {
        (Err(payload), dropped) => {
            if let Err(second) = dropped {
                std::mem::forget(second);
            }
            let (message, location) = panics::describe(payload);
            Failure::Panicked { message, location }
        }
        (Ok(_), Err(payload)) => {
            let (message, location) = panics::describe(payload);
            Failure::Panicked {
                message: format!("while dropping the error: {message}"),
                location,
            }
        }
        (Ok(chain), Ok(())) => Failure::Failed { chain },
    }
}

/// Drops `value` after a panic has been caught: a panic of its `Drop` is caught too,
/// and its payload leaked rather than dropped (whose `Drop` could panic in turn).
fn drop_quietly<V>(value: V) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(value))) {
        std::mem::forget(payload);
    }
}

/// "panicked while `doing` at `location`: `message`", for a panic payload.
fn panicked_while(doing: &str, payload: Box<dyn std::any::Any + Send>) -> String {
    let (message, location) = panics::describe(payload);
    let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
    format!("panicked while {doing}{at}: {message}")
}

fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Halve<T>(T);

    impl<T: Serialize + DeserializeOwned + 'static> Task for Halve<T> {
        const NAME: &'static str = "tests::Halve";
        type Output = T;
        fn run(self) -> Result<T, BoxError> {
            Ok(self.0)
        }
    }

    fn registry_of(registrations: &'static [Registration]) -> HashMap<&'static str, Vec<Entry>> {
        let mut map: HashMap<&'static str, Vec<Entry>> = HashMap::new();
        for registration in registrations {
            map.entry(registration.name).or_default().push(Entry {
                registration,
                fingerprint: registration.types.fingerprint(),
            });
        }
        map
    }

    #[test]
    fn each_instantiation_has_its_own_fingerprint() {
        let of = |types: TaskTypes| types.fingerprint();
        let u32s = of(TaskTypes::of::<Halve<u32>>());
        assert_eq!(u32s, of(TaskTypes::of::<Halve<u32>>()));
        assert_ne!(u32s, of(TaskTypes::of::<Halve<i32>>()));
        assert_ne!(u32s, of(TaskTypes::of::<Halve<f64>>()));
        assert!(TaskTypes::of::<Halve<u32>>()
            .describe()
            .ends_with("Halve<u32> -> u32"));
    }

    #[test]
    fn paths_are_cut_from_type_names() {
        assert_eq!(
            without_paths("app::tasks::Double<alloc::vec::Vec<app::Item>>"),
            "Double<Vec<Item>>"
        );
        assert_eq!(without_paths("u32"), "u32");
        assert_eq!(
            without_paths("(core::option::Option<u8>, [x::Y; 3], &str)"),
            "(Option<u8>, [Y; 3], &str)"
        );
        // The same task compiled into another crate has the same fingerprint.
        let ours = TaskTypes::of::<Halve<u32>>();
        let theirs = TaskTypes {
            task: || "worker_bin::copied::Halve<u32>",
            output: || "u32",
            id: TypeId::of::<()>,
        };
        assert_eq!(ours.fingerprint(), theirs.fingerprint());
    }

    #[test]
    fn the_worker_runs_only_the_instantiation_it_was_sent() {
        static REGISTERED: [Registration; 2] = [
            Registration::of::<Halve<u32>>(),
            Registration::of::<Halve<u64>>(),
        ];
        let registry = registry_of(&REGISTERED);
        let fingerprint = |types: TaskTypes| types.fingerprint();
        assert!(find_in(
            &registry,
            "tests::Halve",
            fingerprint(TaskTypes::of::<Halve<u64>>())
        )
        .is_ok());
        let wrong = find_in(
            &registry,
            "tests::Halve",
            fingerprint(TaskTypes::of::<Halve<i32>>()),
        );
        let Err(Failure::WrongTypes { name, registered }) = wrong else {
            panic!("an unregistered instantiation ran");
        };
        assert_eq!(name, "tests::Halve");
        assert_eq!(registered.len(), 2);
        assert!(
            registered[0].ends_with("Halve<u32> -> u32"),
            "{registered:?}"
        );
        assert!(matches!(
            find_in(&registry, "tests::Other", 0),
            Err(Failure::UnknownTask { .. })
        ));
    }
}
