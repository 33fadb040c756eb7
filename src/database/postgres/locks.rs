//! Lock waits of a PostgreSQL restore: `pg_restore --clean` needs an
//! exclusive lock on every table it drops, so another session with an open
//! transaction that read one makes it wait. A watcher says which sessions
//! hold the locks it waits for, from `pg_locks` and `pg_stat_activity`, as
//! a warning while it waits, and once it has waited for the lock timeout
//! (`restore --lock-timeout`) cancels the restore's own waiting statement,
//! so that the restore fails and its transaction rolls back. (`pg_restore`
//! sets `lock_timeout = 0` in its sessions, whatever `PGOPTIONS` says.)
//!
//! Reads the server's activity, and never cancels another session than the
//! restore's own.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::dump::Server;

/// How long a restore waits for a lock unless told otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the watcher looks.
const POLL: Duration = Duration::from_millis(500);

/// The lock timeout as PostgreSQL and people read it: `60s`; `0` is no limit.
pub fn describe_timeout(timeout: Duration) -> String {
    if timeout.is_zero() {
        "none (waits for ever)".to_owned()
    } else {
        format!("{}s", timeout.as_secs_f64())
    }
}

/// The application name the restore's own sessions go by (`PGAPPNAME`).
pub fn application_name() -> String {
    format!("backup-restore-{}", std::process::id())
}

/// What the restore waited for, as the watcher saw it.
#[derive(Debug, Clone, Default)]
pub struct Waited {
    /// The locks it waited for last, and who held them, for people.
    pub waits: Option<String>,
    /// Whether the watcher cancelled the wait at the lock timeout.
    pub gave_up: bool,
}

/// A running watcher; [`LockWatch::stop`] ends it.
pub struct LockWatch {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<Waited>>,
}

impl LockWatch {
    /// Watches the sessions named [`application_name`] on `connection`'s
    /// server, warns once for every new set of locks they wait for, and
    /// cancels their wait once it has lasted `timeout` (zero: never).
    pub fn start(connection: Server, what: String, timeout: Duration) -> LockWatch {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let name = application_name();
            let mut client = None;
            let mut waited = Waited::default();
            let mut since: Option<Instant> = None;
            loop {
                match stopped.recv_timeout(POLL) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return waited,
                }
                if client.is_none() {
                    client = connection.connect_blocking(None).ok();
                }
                let Some((runtime, session)) = &client else {
                    continue;
                };
                let Some(waits) = runtime.block_on(waits(session, &name)) else {
                    continue;
                };
                if waits.is_empty() {
                    since = None;
                    continue;
                }
                let started = *since.get_or_insert_with(Instant::now);
                if waited.waits.as_deref() != Some(waits.as_str()) {
                    tracing::warn!(
                        target_database = %what,
                        lock_timeout = %describe_timeout(timeout),
                        "The restore waits for {waits}. End that transaction (or stop the session); after the lock timeout (--lock-timeout) the restore gives up and changes nothing."
                    );
                    waited.waits = Some(waits);
                }
                if !timeout.is_zero() && started.elapsed() >= timeout {
                    let cancelled = runtime.block_on(session.execute(
                        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                          WHERE application_name = $1 AND wait_event_type = 'Lock'",
                        &[&name],
                    ));
                    waited.gave_up |= cancelled.is_ok_and(|count| count > 0);
                }
            }
        });
        LockWatch {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops watching: what the restore waited for.
    pub fn stop(mut self) -> Waited {
        self.stop.take();
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for LockWatch {
    fn drop(&mut self) {
        self.stop.take();
    }
}

/// The locks the sessions named `name` wait for and who holds them, for
/// people; empty when they wait for nothing, `None` if it cannot be read.
async fn waits(client: &tokio_postgres::Client, name: &str) -> Option<String> {
    let rows = client
        .query(
            "SELECT DISTINCT coalesce((SELECT n.nspname || '.' || c.relname FROM pg_class c
                                        JOIN pg_namespace n ON n.oid = c.relnamespace
                                       WHERE c.oid = waiting.relation), waiting.locktype),
                    waiting.mode,
                    holder.pid, coalesce(holder.usename, '?'), coalesce(holder.application_name, ''),
                    coalesce(holder.state, '?'),
                    coalesce(to_char(holder.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '?')
               FROM pg_stat_activity restore
               JOIN pg_locks waiting ON waiting.pid = restore.pid AND NOT waiting.granted
              CROSS JOIN LATERAL unnest(pg_blocking_pids(restore.pid)) AS blocking(pid)
               JOIN pg_stat_activity holder ON holder.pid = blocking.pid
              WHERE restore.application_name = $1
              ORDER BY 1, 3",
            &[&name],
        )
        .await
        .ok()?;
    let waits: Vec<String> = rows
        .iter()
        .map(|row| {
            let application: String = row.get(4);
            format!(
                "{} on {}, held by session {} (user {}{}, {}, transaction open since {} UTC)",
                row.get::<_, String>(1),
                row.get::<_, String>(0),
                row.get::<_, i32>(2),
                row.get::<_, String>(3),
                if application.is_empty() {
                    String::new()
                } else {
                    format!(", application {application}")
                },
                row.get::<_, String>(5),
                row.get::<_, String>(6),
            )
        })
        .collect();
    Some(waits.join("; "))
}
