//! The one cancellation signal of a run, seen from sync and async code.
//!
//! `events.cancelled()` reads the flag; in-flight HTTP requests wait on the
//! token and return `registry-error.cancelled` (never "not found", which the
//! plugin would take as an answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    token: CancellationToken,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the run: the plugin sees it at its next check, and every
    /// pending and future registry request ends as cancelled.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once [`Cancel::cancel`] has been called.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
}
