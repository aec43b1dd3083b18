//! Running task functions ([`TaskFn`], made by `#[procpool::task]`): `call` and
//! `map_fn` read like calling the function, with the pool. Each wraps its inputs in
//! [`Call`]s and goes the way of `submit` and `map`.

use super::api::Pool;
use super::handle::TaskHandle;
use super::map::{Map, MapUnordered};
use super::options::TaskOptions;
use crate::error::SubmitError;
use crate::task_fn::{Call, Calls, TaskFn};

impl Pool {
    /// Runs the task function `task` on `input` in a worker, waiting for room if the
    /// pool is at its [in-flight limit](crate::PoolBuilder::max_in_flight): the pool's
    /// way of calling `task(input)`. A function of several arguments takes them as a
    /// tuple, one of none takes `()`. It runs with the settings its attribute gives,
    /// the pool's for the rest.
    ///
    /// ```no_run
    /// #[procpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// #[procpool::task]
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// fn main() -> anyhow::Result<()> {
    ///     procpool::init();
    ///     let pool = procpool::Pool::new()?;
    ///     let squared = pool.call(square, 12)?;
    ///     let sum = pool.call(add, (2, 3))?;
    ///     assert_eq!(squared.wait()?, 144);
    ///     assert_eq!(sum.wait()?, 5);
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Errors
    /// Hands the input back when the pool is shut down or can no longer start workers.
    pub fn call<F: TaskFn>(
        &self,
        task: F,
        input: F::Input,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F::Input>> {
        self.call_with(task, input, &TaskOptions::new())
    }

    /// Like [`call`](Pool::call), with `options` in place of the function's own
    /// settings and the pool's, where they are set.
    ///
    /// # Errors
    /// Hands the input back when the pool is shut down or can no longer start workers.
    pub fn call_with<F: TaskFn>(
        &self,
        task: F,
        input: F::Input,
        options: &TaskOptions,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F::Input>> {
        self.submit_with(Call::new(task, input), options)
            .map_err(input_back)
    }

    /// Like [`call`](Pool::call), if there is room now.
    ///
    /// # Errors
    /// Hands the input back when the pool is at its in-flight limit, shut down, or can
    /// no longer start workers.
    pub fn try_call<F: TaskFn>(
        &self,
        task: F,
        input: F::Input,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F::Input>> {
        self.try_call_with(task, input, &TaskOptions::new())
    }

    /// Like [`try_call`](Pool::try_call), with `options` in place of the function's
    /// own settings and the pool's, where they are set.
    ///
    /// # Errors
    /// Hands the input back when the pool is at its in-flight limit, shut down, or can
    /// no longer start workers.
    pub fn try_call_with<F: TaskFn>(
        &self,
        task: F,
        input: F::Input,
        options: &TaskOptions,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F::Input>> {
        self.try_submit_with(Call::new(task, input), options)
            .map_err(input_back)
    }

    /// Like [`call`](Pool::call), from async code: waits for room under the in-flight
    /// limit without blocking a thread, as [`submit_async`](Pool::submit_async) does.
    /// Await the handle it gives for the outcome: `pool.call_async(f, x).await?.await`.
    ///
    /// # Errors
    /// Hands the input back when the pool is shut down or can no longer start workers.
    #[cfg(feature = "async")]
    pub async fn call_async<F: TaskFn>(
        &self,
        task: F,
        input: F::Input,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F::Input>> {
        self.call_async_with(task, input, &TaskOptions::new()).await
    }

    /// Like [`call_async`](Pool::call_async), with `options` in place of the function's
    /// own settings and the pool's, where they are set.
    ///
    /// # Errors
    /// Hands the input back when the pool is shut down or can no longer start workers.
    #[cfg(feature = "async")]
    pub async fn call_async_with<F: TaskFn>(
        &self,
        task: F,
        input: F::Input,
        options: &TaskOptions,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F::Input>> {
        self.submit_async_with(Call::new(task, input), options)
            .await
            .map_err(input_back)
    }

    /// Runs the task function `task` on every input and yields the outcomes in input
    /// order, like [`map`](Pool::map): lazy, batched, and dropping the iterator cancels
    /// what it still has in flight.
    ///
    /// ```no_run
    /// #[procpool::task]
    /// fn count_words(text: String) -> usize {
    ///     text.split_whitespace().count()
    /// }
    ///
    /// fn main() -> anyhow::Result<()> {
    ///     procpool::init();
    ///     let pool = procpool::Pool::new()?;
    ///     let texts = ["a b", "c d e"].map(String::from);
    ///     let counts = pool
    ///         .map_fn(count_words, texts)
    ///         .collect::<Result<Vec<_>, _>>()?;
    ///     assert_eq!(counts, [2, 3]);
    ///     Ok(())
    /// }
    /// ```
    pub fn map_fn<F, I>(&self, task: F, inputs: I) -> Map<'_, Calls<F, I::IntoIter>>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map_fn_with(task, inputs, &TaskOptions::new())
    }

    /// Like [`map_fn`](Pool::map_fn), with `options` in place of the function's own
    /// settings and the pool's for every task of the map.
    pub fn map_fn_with<F, I>(
        &self,
        task: F,
        inputs: I,
        options: &TaskOptions,
    ) -> Map<'_, Calls<F, I::IntoIter>>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map_with(Calls::new(task, inputs.into_iter()), options)
    }

    /// Like [`map_fn`](Pool::map_fn), but yields `(input index, outcome)` as tasks
    /// finish, like [`map_unordered`](Pool::map_unordered).
    pub fn map_fn_unordered<F, I>(
        &self,
        task: F,
        inputs: I,
    ) -> MapUnordered<'_, Calls<F, I::IntoIter>>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map_fn_unordered_with(task, inputs, &TaskOptions::new())
    }

    /// Like [`map_fn_unordered`](Pool::map_fn_unordered), with `options` in place of
    /// the function's own settings and the pool's for every task of the map.
    pub fn map_fn_unordered_with<F, I>(
        &self,
        task: F,
        inputs: I,
        options: &TaskOptions,
    ) -> MapUnordered<'_, Calls<F, I::IntoIter>>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map_unordered_with(Calls::new(task, inputs.into_iter()), options)
    }
}

/// A refused call hands back its input, not the [`Call`] around it.
fn input_back<F: TaskFn>(refused: SubmitError<Call<F>>) -> SubmitError<F::Input> {
    let kind = refused.kind();
    SubmitError::new(refused.into_inner().into_input(), kind)
}
