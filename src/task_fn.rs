//! [`TaskFn`]: a function as a task. `#[procpool::task]` implements it for a unit
//! struct named after the function; [`Call`] carries one input of such a function and
//! is the [`Task`] that travels, so a function task is found by name and checked by type
//! exactly like a hand-written one.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pool::TaskOptions;
use crate::task::{BoxError, Task};

/// A function that runs in a worker process, defined with `#[procpool::task]`.
///
/// The attribute turns the function into a unit struct of the same name that
/// implements this trait (and still calls like the function), and registers it. Hand it
/// to [`Pool::call`](crate::Pool::call) or [`Pool::map_fn`](crate::Pool::map_fn) with
/// the input. Implementing it by hand is possible but needs
/// [`register!`](crate::register)`(procpool::Call<YourType>)` as well; the attribute
/// does both.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a procpool task function",
    label = "expected a function marked `#[procpool::task]`",
    note = "a worker process cannot run a closure or an unmarked function: put \
            `#[procpool::task]` on a named function and pass that function's name, as in \
            `pool.call(parse, input)`"
)]
pub trait TaskFn: Copy + 'static {
    /// The stable name the worker looks the function up by: the module path and the
    /// function's name unless the attribute sets `name`.
    const NAME: &'static str;
    /// The function's argument, or a tuple of its arguments (`()` for none).
    type Input: Serialize + DeserializeOwned + 'static;
    /// What a successful run returns: the return type, or the `Ok` type of a `Result`.
    type Output: Serialize + DeserializeOwned + 'static;

    /// Settings the function's tasks run with unless a call brings its own: those the
    /// attribute sets (`timeout`, `retries`), the pool's for the rest.
    fn options() -> TaskOptions {
        TaskOptions::new()
    }

    /// Runs the function on `input`, inside a worker process.
    ///
    /// # Errors
    /// The function's own `Err`, which reaches the caller as
    /// [`TaskError::Failed`](crate::TaskError::Failed).
    fn run(input: Self::Input) -> Result<Self::Output, BoxError>;
}

/// One call of a task function: its input, as a [`Task`] that runs `F`.
///
/// [`Pool::call`](crate::Pool::call) and [`Pool::map_fn`](crate::Pool::map_fn) make
/// these; build one yourself to hand a function task to an API that takes a `Task`
/// (`pool.submit(Call::new(parse, input))`). It is encoded as its input alone.
pub struct Call<F: TaskFn> {
    input: F::Input,
    task: PhantomData<fn() -> F>,
}

impl<F: TaskFn> Call<F> {
    /// A call of `task` on `input`.
    pub fn new(task: F, input: F::Input) -> Call<F> {
        let _ = task;
        Call::of(input)
    }

    fn of(input: F::Input) -> Call<F> {
        Call {
            input,
            task: PhantomData,
        }
    }

    /// The input, taken back.
    pub fn into_input(self) -> F::Input {
        self.input
    }
}

impl<F: TaskFn> Task for Call<F> {
    const NAME: &'static str = F::NAME;
    type Output = F::Output;

    fn options() -> TaskOptions {
        F::options()
    }

    fn run(self) -> Result<F::Output, BoxError> {
        F::run(self.input)
    }
}

impl<F: TaskFn> Serialize for Call<F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.input.serialize(serializer)
    }
}

impl<'de, F: TaskFn> Deserialize<'de> for Call<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        F::Input::deserialize(deserializer).map(Call::of)
    }
}

impl<F: TaskFn> Clone for Call<F>
where
    F::Input: Clone,
{
    fn clone(&self) -> Self {
        Call::of(self.input.clone())
    }
}

impl<F: TaskFn> fmt::Debug for Call<F>
where
    F::Input: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Call")
            .field(&F::NAME)
            .field(&self.input)
            .finish()
    }
}

/// The inputs of a [`map_fn`](crate::Pool::map_fn) as [`Call`]s of `F`: an iterator
/// adapter, made by the pool.
pub struct Calls<F: TaskFn, I> {
    inputs: I,
    task: PhantomData<fn() -> F>,
}

impl<F: TaskFn, I> Calls<F, I> {
    pub(crate) fn new(task: F, inputs: I) -> Calls<F, I> {
        let _ = task;
        Calls {
            inputs,
            task: PhantomData,
        }
    }
}

impl<F, I> Iterator for Calls<F, I>
where
    F: TaskFn,
    I: Iterator<Item = F::Input>,
{
    type Item = Call<F>;

    fn next(&mut self) -> Option<Call<F>> {
        self.inputs.next().map(Call::of)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inputs.size_hint()
    }
}

impl<F: TaskFn, I> fmt::Debug for Calls<F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Calls")
            .field(&F::NAME)
            .finish_non_exhaustive()
    }
}

/// What a task function's return type becomes: `Ok` the output, `Err` the task's
/// failure. Implemented for `Result`s whose error converts into a [`BoxError`]
/// (`anyhow::Result` included); the attribute uses it for a return type spelled
/// `Result<..>`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task function's result",
    label = "the error type must convert into `procpool::BoxError`",
    note = "a task function returns `Result<T, E>` where `E: Into<procpool::BoxError>` (any \
            `std::error::Error + Send + Sync + 'static`, `anyhow::Error`, `String`), or a \
            plain serializable value"
)]
pub trait TaskResult {
    /// The output of a successful run.
    type Ok;
    /// The outcome, with the error boxed.
    ///
    /// # Errors
    /// The function's own error, boxed.
    fn into_outcome(self) -> Result<Self::Ok, BoxError>;
}

impl<T, E: Into<BoxError>> TaskResult for Result<T, E> {
    type Ok = T;

    fn into_outcome(self) -> Result<T, BoxError> {
        self.map_err(Into::into)
    }
}

/// Compiles only for a type that can cross to a worker and back; the attribute names
/// each argument and the output here, at its own span, so a type that cannot says so
/// where it is written.
#[doc(hidden)]
pub const fn assert_task_value<T: Serialize + DeserializeOwned + 'static>() {}

/// Compiles only for an error type a task function may return.
#[doc(hidden)]
pub const fn assert_task_error<E: Into<BoxError>>() {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;

    #[derive(Clone, Copy)]
    struct Halve;

    impl TaskFn for Halve {
        const NAME: &'static str = "tests::halve";
        type Input = (u64, String);
        type Output = u64;
        fn options() -> TaskOptions {
            TaskOptions::new().retries(4)
        }
        fn run((n, why): (u64, String)) -> Result<u64, BoxError> {
            match n % 2 {
                0 => Ok(n / 2),
                _ => Err(why.into()),
            }
        }
    }

    #[test]
    fn a_call_is_encoded_as_its_input_alone() {
        let call = Call::new(Halve, (8, "odd".to_owned()));
        let mut ours = Vec::new();
        let mut plain = Vec::new();
        codec::encode_into(&call, &mut ours).unwrap();
        codec::encode_into(&(8u64, "odd"), &mut plain).unwrap();
        assert_eq!(ours, plain);
        let back: Call<Halve> = codec::decode(&ours).unwrap();
        assert_eq!(back.into_input(), (8, "odd".to_owned()));
    }

    #[test]
    fn a_call_runs_its_function_under_its_name_and_options() {
        assert_eq!(<Call<Halve> as Task>::NAME, "tests::halve");
        assert_eq!(
            <Call<Halve> as Task>::options(),
            TaskOptions::new().retries(4)
        );
        assert_eq!(Call::new(Halve, (8, String::new())).run().unwrap(), 4);
        let error = Call::new(Halve, (7, "odd".to_owned())).run().unwrap_err();
        assert_eq!(error.to_string(), "odd");
    }

    #[test]
    fn calls_wrap_each_input_in_turn() {
        let calls = Calls::new(Halve, [(2, String::new()), (4, String::new())].into_iter());
        assert_eq!(calls.size_hint(), (2, Some(2)));
        let outputs: Vec<u64> = calls.map(|c| c.run().unwrap()).collect();
        assert_eq!(outputs, [1, 2]);
    }

    #[test]
    fn a_result_s_error_is_boxed() {
        let ok: Result<u8, String> = Ok(3);
        assert_eq!(ok.into_outcome().unwrap(), 3);
        let err: Result<u8, std::io::Error> = Err(std::io::Error::other("disk"));
        assert_eq!(err.into_outcome().unwrap_err().to_string(), "disk");
    }
}
