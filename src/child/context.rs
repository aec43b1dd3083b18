//! The pool's context inside a worker: bytes received once at start-up, decoded on first
//! use per type and kept for the life of the process.

use std::any::{type_name, Any, TypeId};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::de::DeserializeOwned;

use crate::error::ContextError;
use crate::wire::codec;

static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
type Decoded = HashMap<TypeId, &'static (dyn Any + Send + Sync)>;
static DECODED: OnceLock<Mutex<Decoded>> = OnceLock::new();

/// Stores the context received from the parent.
pub(crate) fn set(bytes: Vec<u8>) {
    let _ = BYTES.set(bytes);
}

/// The context the pool was built with, decoded as `C`.
///
/// Call it from inside [`Task::run`](crate::Task::run). The value is decoded once per
/// worker process and type, then shared by every task that worker runs.
///
/// # Errors
/// [`ContextError::Missing`] when the pool has no context (or this is not a worker),
/// [`ContextError::Decode`] when the bytes are not a `C`.
pub fn context<C>() -> Result<&'static C, ContextError>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    let bytes = BYTES.get().ok_or(ContextError::Missing)?;
    let mut decoded = DECODED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(value) = decoded.get(&TypeId::of::<C>()) {
        return Ok(value.downcast_ref::<C>().expect("keyed by TypeId"));
    }
    let value: C = codec::decode(bytes).map_err(|message| ContextError::Decode {
        type_name: type_name::<C>(),
        message,
    })?;
    // Leaked on purpose: one value per type for the life of the worker process.
    let value: &'static C = Box::leak(Box::new(value));
    decoded.insert(TypeId::of::<C>(), value);
    Ok(value)
}
