//! [`Link`]: one connection to the server that survives the server's restarts. A
//! command that fails for want of the server (connection dropped, refused, the server
//! still loading its data) is retried on a new connection, with exponential backoff,
//! for up to the link's patience; any other error is returned at once.

use std::thread;
use std::time::{Duration, Instant};

use redis::{Client, Connection, ErrorKind, RedisError, RedisResult};

use crate::error::ClusterError;

/// The first wait before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that reconnects.
pub(crate) struct Link {
    client: Client,
    connection: Option<Connection>,
    /// How long to keep trying through an outage before giving up.
    patience: Duration,
    /// The longest a reply may take beyond a command's own blocking time.
    reply_timeout: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field(
                "server",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl Link {
    /// A link to the server at `url` (`redis://`, `rediss://` with the feature `tls`,
    /// `redis+unix://`; a password in the URL), connected at once. With `root_cert`
    /// (PEM), a `rediss://` server's certificate must chain to it rather than to the
    /// system's roots.
    ///
    /// # Errors
    /// A URL the client cannot read (`rediss://` without the feature `tls`), or a server
    /// out of reach for all of `patience`.
    pub(crate) fn open(
        url: &str,
        patience: Duration,
        root_cert: Option<&[u8]>,
    ) -> Result<Link, ClusterError> {
        let client = client(url, root_cert).map_err(|source| ClusterError::Redis {
            during: "reading the server's URL",
            source,
        })?;
        let mut link = Link {
            client,
            connection: None,
            patience,
            reply_timeout: Duration::from_secs(30),
        };
        link.run("connecting", |c| redis::cmd("PING").query::<()>(c))?;
        Ok(link)
    }

    /// A second link to the same server (its own connection), with the same patience.
    pub(crate) fn another(&self) -> Result<Link, ClusterError> {
        let mut link = Link {
            client: self.client.clone(),
            connection: None,
            patience: self.patience,
            reply_timeout: self.reply_timeout,
        };
        link.run("connecting", |c| redis::cmd("PING").query::<()>(c))?;
        Ok(link)
    }

    /// Runs `command` on the connection (made anew if need be), retrying it through an
    /// outage; `during` says what it is for, in errors. `command` may run more than
    /// once: what it does must be safe to repeat.
    pub(crate) fn run<T>(
        &mut self,
        during: &'static str,
        mut command: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            let result = self.connection().and_then(&mut command);
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !is_outage(&error) {
                return Err(ClusterError::Redis {
                    during,
                    source: error,
                });
            }
            // The connection may be half-read: never reuse it.
            self.connection = None;
            let waited = started.elapsed();
            if waited >= self.patience {
                return Err(ClusterError::Unreachable {
                    during,
                    waited,
                    source: error,
                });
            }
            thread::sleep(backoff(tries).min(self.patience - waited));
            tries = tries.saturating_add(1);
        }
    }

    /// Like [`run`](Link::run), for a command that blocks on the server up to `block`:
    /// the reply may take that much longer.
    pub(crate) fn run_blocking<T>(
        &mut self,
        during: &'static str,
        block: Duration,
        command: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let usual = self.reply_timeout;
        self.reply_timeout = usual + block;
        if let Some(connection) = &self.connection {
            let _ = connection.set_read_timeout(Some(self.reply_timeout));
        }
        let result = self.run(during, command);
        self.reply_timeout = usual;
        if let Some(connection) = &self.connection {
            let _ = connection.set_read_timeout(Some(usual));
        }
        result
    }

    fn connection(&mut self) -> RedisResult<&mut Connection> {
        if self.connection.is_none() {
            let connection = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            connection.set_read_timeout(Some(self.reply_timeout))?;
            connection.set_write_timeout(Some(self.reply_timeout))?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("set just above"))
    }
}

/// The client for `url`, trusting `root_cert` for TLS if given.
#[cfg(feature = "tls")]
fn client(url: &str, root_cert: Option<&[u8]>) -> RedisResult<Client> {
    match root_cert {
        None => Client::open(url),
        Some(root_cert) => Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert.to_vec()),
            },
        ),
    }
}

/// The client for `url`; without the feature `tls` there is no root certificate to
/// trust, and a `rediss://` URL is refused by the client.
#[cfg(not(feature = "tls"))]
fn client(url: &str, _root_cert: Option<&[u8]>) -> RedisResult<Client> {
    Client::open(url)
}

/// Whether `error` says the server is out of reach for now (worth reconnecting and
/// trying again), rather than that it refused the command.
pub(crate) fn is_outage(error: &RedisError) -> bool {
    if is_refused_peer(error) {
        return false;
    }
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(error.code(), Some("LOADING" | "TRYAGAIN" | "MASTERDOWN"))
        || error.kind() == ErrorKind::Io
}

/// Whether the connection failed on what the peer sent rather than on reaching it: a
/// certificate not trusted, a TLS handshake refused. Waiting does not mend that.
fn is_refused_peer(error: &RedisError) -> bool {
    // The client keeps the I/O error behind an `Arc`, which is what `source` gives.
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let io = std::error::Error::source(error)
        .and_then(|cause| cause.downcast_ref::<Shared>())
        .and_then(|shared| shared.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
}

/// The wait before try `tries + 1` after an outage: doubling from `FIRST_BACKOFF` up to
/// `MAX_BACKOFF`.
pub(crate) fn backoff(tries: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(tries.min(16)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0), Duration::from_millis(20));
        assert_eq!(backoff(1), Duration::from_millis(40));
        assert_eq!(backoff(3), Duration::from_millis(160));
        assert_eq!(backoff(7), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
