//! Rendezvous through c10d's `TCPStore`: the server lives on rank 0, every rank is a client.

use std::ffi::CString;
use std::time::Duration;

use crate::error::{C10dError, Result};
use crate::ffi;

/// Where and how to rendezvous.
#[derive(Debug, Clone)]
pub(crate) struct StoreOptions {
    /// Host of the rank-0 store (`MASTER_ADDR`).
    pub(crate) host: String,
    /// Port of the rank-0 store (`MASTER_PORT`).
    pub(crate) port: u16,
    /// Number of ranks that will connect.
    pub(crate) world_size: usize,
    /// Whether this process hosts the server (rank 0).
    pub(crate) is_server: bool,
    /// How long to wait for the server, and for keys, before failing.
    pub(crate) timeout: Duration,
}

/// The store key holding the run token.
const TOKEN_KEY: &str = "arl/run_token";

/// A connected `TCPStore` (a server too, on rank 0).
pub(crate) struct TcpStore {
    raw: *mut ffi::RawStore,
}

// SAFETY: c10d stores are internally synchronised and usable from any thread.
unsafe impl Send for TcpStore {}
// SAFETY: as above; all shim calls on a store are thread-safe.
unsafe impl Sync for TcpStore {}

impl TcpStore {
    /// Starts the server (if `is_server`) and connects to it, within `timeout`.
    ///
    /// # Errors
    /// No server at the address within the timeout, the port already in use, an
    /// unresolvable host: c10d's message, naming the address.
    pub(crate) fn connect(opts: &StoreOptions, rank: i64) -> Result<Self> {
        let op = format!(
            "store {} {}:{}",
            if opts.is_server {
                "serve at"
            } else {
                "connect to"
            },
            opts.host,
            opts.port
        );
        let host = CString::new(opts.host.as_str()).map_err(|_| C10dError::Invalid {
            op: op.clone(),
            rank,
            reason: "host contains a NUL byte".into(),
        })?;
        let world_size = i32::try_from(opts.world_size).map_err(|_| C10dError::Invalid {
            op: op.clone(),
            rank,
            reason: format!("world size {} is too large", opts.world_size),
        })?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `host` outlives the call; `raw` is written only on success.
        let status = unsafe {
            ffi::arl_store_create(
                host.as_ptr(),
                opts.port,
                world_size,
                opts.is_server,
                millis(opts.timeout),
                &mut raw,
            )
        };
        ffi::take_error(status).map_err(|message| C10dError::Op { op, rank, message })?;
        Ok(Self { raw })
    }

    /// Checks that the store is this run's: the server publishes `token`, every rank reads it
    /// back and compares.
    ///
    /// # Errors
    /// Another run's token (both named), or none within the store's timeout.
    pub(crate) fn check_token(&self, token: &str, is_server: bool, rank: i64) -> Result<()> {
        let invalid = |reason: &str| C10dError::Invalid {
            op: "rendezvous".into(),
            rank,
            reason: reason.into(),
        };
        let token =
            CString::new(token).map_err(|_| invalid("the run token contains a NUL byte"))?;
        let key = CString::new(TOKEN_KEY).expect("static key");
        // SAFETY: the store is live; the strings outlive the call.
        let status = unsafe {
            ffi::arl_store_check_token(self.raw, key.as_ptr(), token.as_ptr(), is_server)
        };
        ffi::take_error(status).map_err(|message| C10dError::Op {
            op: "rendezvous".into(),
            rank,
            message,
        })
    }

    pub(crate) fn raw(&self) -> *mut ffi::RawStore {
        self.raw
    }
}

impl Drop for TcpStore {
    fn drop(&mut self) {
        // SAFETY: `raw` came from arl_store_create and is freed once.
        unsafe { ffi::arl_store_free(self.raw) };
    }
}

/// Milliseconds as c10d wants them, saturating.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
