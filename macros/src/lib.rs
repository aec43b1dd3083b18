//! The `#[procpool::task]` attribute. Use it through `procpool`, which re-exports it
//! (feature `macros`, on by default); the code it writes names `::procpool`.

mod expand;
mod options;
mod signature;

use proc_macro::TokenStream;
use syn::ItemFn;

use options::Options;
use signature::Shape;

/// Makes a function a procpool task: defined and registered in one line, run in a
/// worker with `Pool::call` or `Pool::map_fn`, and still callable here like the
/// function it was.
///
/// ```
/// #[procpool::task]
/// fn parse(text: String) -> Result<u64, std::num::ParseIntError> {
///     text.trim().parse()
/// }
///
/// // A plain call runs right here: a unit test of the function needs no pool.
/// assert_eq!(parse(" 42 ".to_owned()), Ok(42));
/// ```
///
/// With a pool, the same function runs in a worker process:
///
/// ```no_run
/// # #[procpool::task]
/// # fn parse(text: String) -> Result<u64, std::num::ParseIntError> {
/// #     text.trim().parse()
/// # }
/// fn main() -> anyhow::Result<()> {
///     // First line of main: in a worker process this never returns.
///     procpool::init();
///     let pool = procpool::Pool::new()?;
///     assert_eq!(pool.call(parse, "7".to_owned())?.wait()?, 7);
///     let texts = ["1", "two", "3"].map(String::from);
///     for outcome in pool.map_fn(parse, texts) {
///         match outcome {
///             Ok(n) => println!("{n}"),
///             // "two": `Failed`, with the message of the `ParseIntError`.
///             Err(error) => eprintln!("{error}"),
///         }
///     }
///     Ok(())
/// }
/// ```
///
/// # The function
///
/// - **Its arguments are the task's input.** One argument is sent as it is, several as
///   a tuple (`pool.call(add, (1, 2))`), none as `()`. Each must be `Serialize`,
///   `DeserializeOwned` and `'static`: an owned value, not a reference.
/// - **Its return type is the output**, which must be serializable the same way. A
///   return type spelled `Result<..>` (any path ending in `Result`:
///   `Result<T, MyError>`, `std::io::Result<T>`, `anyhow::Result<T>`) is the outcome
///   instead: `Ok(t)` is the output, and `Err(e)` reaches the caller as
///   `TaskError::Failed` with the message of `e` and of each of its causes. The error
///   type must convert into `procpool::BoxError` (any `std::error::Error + Send + Sync`,
///   `anyhow::Error`, `String`).
/// - **It cannot be** generic, `async`, `unsafe` or `extern`, take `self`, or take or
///   return a reference or an `impl Trait`: each is a compile error at what is refused,
///   and so is an argument or a result that is not serializable.
///
/// # Options
///
/// `#[procpool::task(name = "app::parse/v1", timeout = "5s", retries = 2)]`, each
/// optional:
///
/// - `name = "..."`: the stable name a worker finds the function by. It defaults to the
///   module path and the function's name (`app::tasks::parse`), which changes when the
///   function moves; set it to keep a separately built worker binary in step.
/// - `timeout = "..."`: the longest a run may take, a whole number and a unit: `"500ms"`,
///   `"5s"`, `"2min"`, `"1h"`. A run past it ends in `TaskError::TimedOut` naming this
///   limit. `no_timeout` instead lifts the pool's limit for this function.
/// - `retries = N`: how many times a run whose worker crashed is run again.
///
/// These are the function's own defaults: they go over the pool's settings, and a
/// call's `TaskOptions` (`call_with`, `map_fn_with`, ...) go over them.
///
/// ```
/// #[procpool::task(timeout = "30s", retries = 1)]
/// fn render(page: u32) -> Vec<u8> {
///     vec![0; page as usize]
/// }
///
/// use procpool::TaskFn;
/// assert_eq!(
///     render::options(),
///     procpool::TaskOptions::new()
///         .timeout(std::time::Duration::from_secs(30))
///         .retries(1)
/// );
/// ```
///
/// # What it writes
///
/// The function becomes a unit struct of the same name, with its visibility, docs and
/// `cfg`. The struct dereferences to the function's pointer (`fn(Args) -> Ret`), so
/// `parse(text)` still calls it; it implements `procpool::TaskFn` (its `NAME`, `Input`,
/// `Output`, `options` and `run`); and it is registered, as
/// `procpool::register!(procpool::Call<parse>)` would. Its body is kept unchanged in a
/// hidden function.
///
/// Being a struct, it is not itself a function value: where a function is expected,
/// such as `Iterator::map`, pass the pointer, `texts.map(*parse)` (plain
/// `texts.map(parse)` does not compile).
///
/// A worker runs the function only if it links it: define it in the program itself
/// (with the default `Launch::CurrentExe`), or in a library that a separate worker
/// binary links too.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    let parsed = syn::parse::Parser::parse(parser, attr)
        .and_then(|()| function(item.clone()))
        .and_then(|function| Ok((Shape::of(&function.sig)?, function)));
    match parsed {
        Ok((shape, function)) => expand::expand(function, shape, &options).into(),
        // The item stays as it was, so that its uses add no errors of their own.
        Err(error) => {
            let mut out = TokenStream::from(error.to_compile_error());
            out.extend(item);
            out
        }
    }
}

/// The item, if it is a function.
fn function(item: TokenStream) -> syn::Result<ItemFn> {
    syn::parse(item).map_err(|error| {
        syn::Error::new(
            error.span(),
            "`#[procpool::task]` goes on a function: `#[procpool::task] fn name(input: Input) \
             -> Output { .. }`",
        )
    })
}
