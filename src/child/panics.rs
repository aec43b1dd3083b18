//! Turns a panic inside a task into a message and a location.
//!
//! The worker installs a hook that records where the panic happened (the payload alone
//! does not say) and then runs the previous hook, so the usual panic message still
//! reaches the worker's stderr and its tail.

use std::any::Any;
use std::cell::RefCell;
use std::panic;

thread_local! {
    static LAST_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the recording hook in front of the current one. Called once per worker.
pub(crate) fn install_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| l.to_string());
        LAST_LOCATION.with(|slot| *slot.borrow_mut() = location);
        previous(info);
    }));
}

/// The message of a caught panic payload, and where this thread last panicked.
///
/// The payload is dropped under a catch: one made with `panic_any` may be of a type
/// whose `Drop` panics, which must not unwind out of the worker (a second payload
/// from that is leaked, not dropped).
pub(crate) fn describe(payload: Box<dyn Any + Send>) -> (String, Option<String>) {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    };
    let location = LAST_LOCATION.with(|slot| slot.borrow_mut().take());
    if let Err(second) = panic::catch_unwind(panic::AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
    (message, location)
}
