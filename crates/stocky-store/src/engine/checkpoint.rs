//! WAL checkpoints of an SQLite database on their own thread, off the writer's.
//!
//! The writer's connection runs with `wal_autocheckpoint = 0`: left on, SQLite copies the
//! WAL back into the database file inside the commit that crosses 1,000 pages, on the
//! writer's thread (a fifth of its time under load). Instead each of its commits wakes this
//! thread ([`Checkpointer::committed`]), which runs a `PASSIVE` checkpoint — it never waits
//! for, or blocks, the writer or the readers — at most every [`EVERY`]. The WAL stays
//! small, and the copy costs another core's time.
//!
//! Invariants: the thread has its own connection; waking it never blocks (a wake while one
//! is pending is the same wake); dropping the checkpointer runs a last checkpoint and joins
//! the thread.

use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The shortest time between two checkpoints.
const EVERY: Duration = Duration::from_millis(100);

pub(crate) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to the database at `path`.
    pub(crate) fn start(path: &Path) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("stocky-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    let started = Instant::now();
                    checkpoint(&conn);
                    // Spaced out; dropping the checkpointer ends the wait (it unparks).
                    std::thread::park_timeout(EVERY.saturating_sub(started.elapsed()));
                }
                checkpoint(&conn);
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// A write transaction committed: the WAL grew.
    pub(crate) fn committed(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "sqlite: WAL checkpoint failed; will retry");
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
