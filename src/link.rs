//! The ipc-channel connection between the parent and one worker, and its bootstrap.
//!
//! The parent opens a one-shot server and hands its name to the child. The child makes
//! two channels and sends one end of each back in a [`Hello`]. ipc-channel's `accept()`
//! blocks until a client connects, even when the child died first (ipc-channel#201,
//! #261), so [`Listener`] accepts on a helper thread and the parent waits on that with a
//! deadline while it watches the child; a listener given up on is unblocked by
//! connecting to it once and saying [`Hello::Abort`].

use std::io;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
};
use ipc_channel::TryRecvError;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// What a child says first on the bootstrap connection.
#[derive(Serialize, Deserialize)]
pub(crate) enum Hello {
    Ready {
        pid: u32,
        to_worker: IpcBytesSender,
        from_worker: IpcReceiver<ByteBuf>,
    },
    /// Sent by the parent itself, to release a listener nobody will connect to.
    Abort,
}

/// The parent's end of a link to one worker.
#[derive(Debug)]
pub(crate) struct ParentEnd {
    to_worker: IpcBytesSender,
    from_worker: IpcReceiver<ByteBuf>,
}

/// Why a receive came back empty.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    /// Nothing arrived in time; the link is still up.
    Timeout,
    /// The worker's end is closed (it exited, or closed the link).
    Closed,
}

impl ParentEnd {
    pub(crate) fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.to_worker.send(frame)
    }

    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        match self.from_worker.try_recv_timeout(timeout) {
            Ok(buf) => Ok(buf.into_vec()),
            Err(TryRecvError::Empty) => Err(RecvError::Timeout),
            Err(TryRecvError::IpcError(_)) => Err(RecvError::Closed),
        }
    }
}

/// The worker's end of its link to the parent.
#[derive(Debug)]
pub(crate) struct WorkerEnd {
    from_parent: IpcBytesReceiver,
    to_parent: IpcSender<ByteBuf>,
}

impl WorkerEnd {
    /// Connects to the parent's listener `name` and introduces this process.
    pub(crate) fn connect(name: &str) -> io::Result<WorkerEnd> {
        let bootstrap = IpcSender::<Hello>::connect(name.to_owned())?;
        let (to_worker, from_parent) = ipc::bytes_channel()?;
        let (to_parent, from_worker) = ipc::channel::<ByteBuf>()?;
        bootstrap
            .send(Hello::Ready {
                pid: std::process::id(),
                to_worker,
                from_worker,
            })
            .map_err(io::Error::other)?;
        Ok(WorkerEnd {
            from_parent,
            to_parent,
        })
    }

    /// Blocks for the next frame; `None` once the parent is gone.
    pub(crate) fn recv(&self) -> Option<Vec<u8>> {
        self.from_parent.recv().ok()
    }

    pub(crate) fn send(&self, frame: Vec<u8>) -> io::Result<()> {
        self.to_parent
            .send(ByteBuf::from(frame))
            .map_err(io::Error::other)
    }
}

/// A one-shot bootstrap server, accepted on a helper thread.
#[derive(Debug)]
pub(crate) struct Listener {
    name: String,
    accepted: mpsc::Receiver<Result<(u32, ParentEnd), String>>,
    done: bool,
}

/// What waiting on a [`Listener`] gave.
#[derive(Debug)]
pub(crate) enum Accept {
    Ready { pid: u32, end: ParentEnd },
    Pending,
    Failed(String),
}

impl Listener {
    pub(crate) fn new() -> io::Result<Listener> {
        let (server, name) = IpcOneShotServer::<Hello>::new()?;
        let (tx, accepted) = mpsc::channel();
        thread::Builder::new()
            .name("procpool-accept".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let result = match server.accept() {
                    Ok((
                        _,
                        Hello::Ready {
                            pid,
                            to_worker,
                            from_worker,
                        },
                    )) => Ok((
                        pid,
                        ParentEnd {
                            to_worker,
                            from_worker,
                        },
                    )),
                    Ok((_, Hello::Abort)) => Err("start-up abandoned".to_owned()),
                    Err(e) => Err(format!("bootstrap connection failed: {e:?}")),
                };
                let _ = tx.send(result);
            })?;
        Ok(Listener {
            name,
            accepted,
            done: false,
        })
    }

    /// The name a child connects to.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Waits up to `timeout` for the child's hello.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Accept {
        match self.accepted.recv_timeout(timeout) {
            Ok(Ok((pid, end))) => {
                self.done = true;
                Accept::Ready { pid, end }
            }
            Ok(Err(message)) => {
                self.done = true;
                Accept::Failed(message)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Accept::Pending,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.done = true;
                Accept::Failed("bootstrap thread ended".to_owned())
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.done {
            // Release the accept thread: it is blocked until somebody connects.
            if let Ok(tx) = IpcSender::<Hello>::connect(self.name.clone()) {
                let _ = tx.send(Hello::Abort);
            }
        }
    }
}
