//! A one-way "stop starting new work" flag shared by every task of a run.
//!
//! Set by a halt (credential error, too many consecutive failures), by `--limit`, or by the first
//! SIGINT/SIGTERM. Waits anywhere in the pipeline race against it, so a stop takes effect at once
//! without cancelling calls already in flight.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Stop(Arc<watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop(Arc::new(watch::Sender::new(false)))
    }

    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the flag is set (at once if it already is).
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|set| *set).await;
    }

    /// Sleep for `d`, or less if the flag is set meanwhile. Returns false when stopped.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_set(),
            _ = self.wait() => false,
        }
    }
}
