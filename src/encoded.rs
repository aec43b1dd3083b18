//! [`EncodedTask`]: a task in its wire form, without its Rust type, for a transport of
//! its own to carry to another process or machine (the cluster mode's Redis streams),
//! where [`Pool::submit_encoded`](crate::Pool::submit_encoded) runs it; and
//! [`decode_output`], the way back.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Direction, Side, TaskError};
use crate::task::{self, Task};
use crate::wire::codec;

/// A task as bytes: its [`Task::NAME`], the fingerprint of its types, and its encoded
/// value. What one process needs to ask another to run a task it cannot name the type
/// of, and all a receiver may trust of it is that it is bytes.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Square(u64);
/// impl procpool::Task for Square {
///     const NAME: &'static str = "doc::encoded::Square";
///     type Output = u64;
///     fn run(self) -> Result<u64, procpool::BoxError> {
///         Ok(self.0 * self.0)
///     }
/// }
/// procpool::register!(Square);
///
/// let task = procpool::EncodedTask::encode(&Square(7)).unwrap();
/// assert_eq!(task.name(), "doc::encoded::Square");
/// // ... carried elsewhere as (name, types, input), and rebuilt there:
/// let again = procpool::EncodedTask::new(task.name(), task.types(), task.input().to_vec());
/// assert_eq!(again, task);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedTask {
    name: String,
    types: u64,
    input: Vec<u8>,
}

impl EncodedTask {
    /// Encodes `task`.
    ///
    /// # Errors
    /// [`TaskError::Codec`] if its `Serialize` fails, or if it holds a
    /// [`SharedSlice`](crate::SharedSlice) or a [`FrozenSlice`](crate::FrozenSlice):
    /// shared memory does not leave the machine.
    pub fn encode<T: Task>(task: &T) -> Result<EncodedTask, TaskError> {
        let mut input = Vec::new();
        codec::encode_into(task, &mut input).map_err(|message| TaskError::Codec {
            side: Side::Parent,
            direction: Direction::ToWorker,
            message,
        })?;
        Ok(EncodedTask {
            name: T::NAME.to_owned(),
            types: task::fingerprint_of::<T>(false)?,
            input,
        })
    }

    /// A task from its three parts, as another process sent them. Nothing is checked
    /// here: [`Pool::submit_encoded`](crate::Pool::submit_encoded) runs it only if this
    /// program registered a task of that name for those types, and the worker decodes
    /// the input as any other.
    pub fn new(name: impl Into<String>, types: u64, input: Vec<u8>) -> EncodedTask {
        EncodedTask {
            name: name.into(),
            types,
            input,
        }
    }

    /// The task's [`Task::NAME`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fingerprint of the task's types (its own and its output's), which tells the
    /// instantiations of a generic task apart and catches a peer built with other types
    /// under the same name.
    pub fn types(&self) -> u64 {
        self.types
    }

    /// The task's encoded value.
    pub fn input(&self) -> &[u8] {
        &self.input
    }

    /// Takes the encoded value.
    pub fn into_input(self) -> Vec<u8> {
        self.input
    }
}

/// Decodes the output of a task of type `T` that ran as an [`EncodedTask`] (its bytes
/// from [`EncodedHandle::wait`](crate::EncodedHandle::wait), carried back).
///
/// # Errors
/// [`TaskError::Codec`] when the bytes are not a whole `T::Output`.
pub fn decode_output<T: Task>(bytes: &[u8]) -> Result<T::Output, TaskError> {
    codec::decode(bytes).map_err(|message| TaskError::Codec {
        side: Side::Parent,
        direction: Direction::ToParent,
        message,
    })
}

/// Encodes `value` as procpool encodes what crosses its links (bincode 2's standard
/// configuration): for a transport to carry outcomes and [`TaskError`]s in the same
/// form as the tasks.
///
/// # Errors
/// The value's `Serialize` failed, or it holds shared memory; the message says which.
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    codec::encode_into(value, &mut bytes)?;
    Ok(bytes)
}

/// Decodes a whole value that [`encode_value`] encoded.
///
/// # Errors
/// The bytes are not a whole `T` (cut short, garbage, or trailing bytes).
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    codec::decode(bytes)
}
