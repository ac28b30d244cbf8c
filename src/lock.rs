//! One run of a job at a time: the job's run lock.
//!
//! `ListExecutions` is eventually consistent, so two starts in the same second (a schedule
//! retry and a manual `spotstep run`) can both find no other execution running. The lock is
//! an S3 object per job ([`naming::run_lock_key`]) written with a conditional PutObject: S3
//! decides `If-None-Match: *` atomically, so exactly one start takes it. Launch takes it
//! (each launch refreshes it; a redrive finds it its own), every cleanup that ends a run
//! releases it (end of run, a failed step, the status-change rule, the sweep).
//!
//! A lock is **stale**, and another execution takes it over (a write with `If-Match` on the
//! stale lock's ETag, so of two takers one wins), when DescribeExecution shows its holder
//! ended, or when it is older than the job's max runtime plus the sweep's grace: no instance
//! of the holder lives that long (the watchdog), and each launch refreshes it. A holder
//! DescribeExecution does not know is not taken for an ended one while its lock is younger
//! than [`UNKNOWN_HOLDER_SECONDS`]: DescribeExecution is eventually consistent, and a
//! holder that started a moment ago may not show yet. After that it is stale (a lock written
//! by a launch invoked by hand, with a made-up execution, blocks the job that long at most).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::aws::s3::{self, Condition, Written};
use crate::aws::sfn;
use crate::env::{parse_rfc3339, rfc3339, Env};
use crate::error::{Error, Result};
use crate::naming;
use crate::records::Run;

/// The lock object's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLock {
    /// The holder's execution ARN.
    pub execution: String,
    pub run_id: String,
    /// When the holder took or last refreshed it (RFC 3339).
    pub acquired_at: String,
    /// How long after `acquired_at` the lock is stale.
    pub stale_after_seconds: i64,
}

/// Who holds the lock, as far as a would-be holder is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// This execution (a launch retried, a relaunch, a redrive).
    Ours,
    /// Older than its bound, its holder ended, or unreadable: may be taken over.
    Stale,
    /// Another execution that runs.
    Other,
}

/// How long a lock whose holder DescribeExecution does not know still counts as held.
pub const UNKNOWN_HOLDER_SECONDS: i64 = 300;

impl RunLock {
    /// Seconds since the holder took or refreshed the lock (None: unreadable time).
    fn age_seconds(&self, now: OffsetDateTime) -> Option<i64> {
        parse_rfc3339(&self.acquired_at).map(|t| (now - t).whole_seconds())
    }

    /// Whether a holder DescribeExecution does not know may still be running at `now`: it
    /// may have started a moment ago (DescribeExecution is eventually consistent).
    pub fn unknown_holder_may_run(&self, now: OffsetDateTime) -> bool {
        self.age_seconds(now)
            .is_some_and(|age| age <= UNKNOWN_HOLDER_SECONDS)
    }

    /// Whose lock `lock` is for `execution` at `now`; `holder_running` is asked only for a
    /// lock of another execution that is not too old.
    pub fn holder(
        lock: Option<&RunLock>,
        execution: &str,
        now: OffsetDateTime,
        holder_running: impl FnOnce() -> bool,
    ) -> Holder {
        let Some(lock) = lock else {
            return Holder::Stale;
        };
        if lock.execution == execution {
            return Holder::Ours;
        }
        let age = lock.age_seconds(now);
        if age.is_none_or(|age| age > lock.stale_after_seconds) || !holder_running() {
            Holder::Stale
        } else {
            Holder::Other
        }
    }
}

/// How often a start re-reads the lock when a write lost a race.
const TRIES: usize = 3;

/// Takes (or refreshes) the job's run lock for `run`; `ConcurrentRun` naming the holder when
/// another running execution holds it.
pub async fn take(env: &Env, run: &Run, stale_after_seconds: i64) -> Result<()> {
    let bucket = &env.settings.bucket;
    let key = naming::run_lock_key(&run.job);
    for _ in 0..TRIES {
        let mine = RunLock {
            execution: run.execution.clone(),
            run_id: run.run_id.clone(),
            acquired_at: rfc3339(env.clock.now()),
            stale_after_seconds,
        };
        let body = serde_json::to_string(&mine).expect("a RunLock always serializes");
        let held = s3::read_listed(env.s3().await, bucket, &key).await?;
        let written = match &held {
            None => s3::put_if(env.s3().await, bucket, &key, body, Condition::Absent).await?,
            Some((text, etag)) => {
                let lock = serde_json::from_str::<RunLock>(text).ok();
                let running = match &lock {
                    Some(l) if l.execution != run.execution => {
                        match sfn::execution(env.sfn().await, &l.execution).await? {
                            Some(d) => d.running(),
                            None => l.unknown_holder_may_run(env.clock.now()),
                        }
                    }
                    _ => false,
                };
                match RunLock::holder(lock.as_ref(), &run.execution, env.clock.now(), || running) {
                    Holder::Other => {
                        let lock = lock.expect("another holder was read");
                        return Err(Error::ConcurrentRun(format!(
                            "job `{}` is already running as execution `{}` (it holds the run lock \
                             s3://{bucket}/{key} since {}); nothing was launched. Wait for it to \
                             finish (or stop it) before starting another run",
                            run.job, lock.run_id, lock.acquired_at
                        )));
                    }
                    Holder::Stale => {
                        warn!(key, holder = ?lock, "taking over a stale run lock");
                        s3::put_if(
                            env.s3().await,
                            bucket,
                            &key,
                            body,
                            Condition::Unchanged(etag),
                        )
                        .await?
                    }
                    Holder::Ours => {
                        let refreshed = s3::put_if(
                            env.s3().await,
                            bucket,
                            &key,
                            body,
                            Condition::Unchanged(etag),
                        )
                        .await?;
                        if refreshed == Written::Refused {
                            // Another lane of this run's sweep refreshed it at the same moment.
                            info!(key, execution = %run.execution, "the run lock was refreshed by another launch of this run");
                            return Ok(());
                        }
                        refreshed
                    }
                }
            }
        };
        if written == Written::Written {
            info!(key, execution = %run.execution, "holding the run lock");
            return Ok(());
        }
        env.clock.pause(1).await;
    }
    Err(Error::ConcurrentRun(format!(
        "job `{}`: another start of the job took its run lock s3://{bucket}/{key} at the same \
         moment ({TRIES} tries); nothing was launched",
        run.job
    )))
}

/// Releases the job's run lock if `execution` holds it; returns whether it did.
pub async fn release(env: &Env, job: &str, execution: &str) -> Result<bool> {
    let bucket = &env.settings.bucket;
    let key = naming::run_lock_key(job);
    let Some((text, _)) = s3::read_listed(env.s3().await, bucket, &key).await? else {
        return Ok(false);
    };
    let ours = serde_json::from_str::<RunLock>(&text).is_ok_and(|l| l.execution == execution);
    if ours {
        s3::delete(env.s3().await, bucket, &key).await?;
        info!(key, execution, "released the run lock");
    }
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(execution: &str, acquired_at: &str) -> RunLock {
        RunLock {
            execution: execution.into(),
            run_id: "r".into(),
            acquired_at: acquired_at.into(),
            stale_after_seconds: 3600,
        }
    }

    #[test]
    fn a_holder_describe_execution_does_not_know_counts_only_while_the_lock_is_young() {
        let now = parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
        assert!(lock("arn:other", "2026-11-28T09:59:58Z").unknown_holder_may_run(now));
        assert!(lock("arn:other", "2026-11-28T09:55:00Z").unknown_holder_may_run(now));
        assert!(!lock("arn:other", "2026-11-28T09:54:59Z").unknown_holder_may_run(now));
        assert!(!lock("arn:other", "not a time").unknown_holder_may_run(now));
    }

    #[test]
    fn whose_lock() {
        let now = parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
        let fresh = lock("arn:other", "2026-11-28T09:30:00Z");
        let old = lock("arn:other", "2026-11-28T08:59:59Z");
        let table = [
            (None, true, Holder::Stale),
            (
                Some(lock("arn:me", "2026-11-28T09:59:00Z")),
                true,
                Holder::Ours,
            ),
            // A redrive days later still finds its own lock.
            (
                Some(lock("arn:me", "2026-11-01T00:00:00Z")),
                false,
                Holder::Ours,
            ),
            (Some(fresh.clone()), true, Holder::Other),
            (Some(fresh), false, Holder::Stale),
            (Some(old), true, Holder::Stale),
            (Some(lock("arn:other", "not a time")), true, Holder::Stale),
        ];
        for (held, running, expected) in table {
            assert_eq!(
                RunLock::holder(held.as_ref(), "arn:me", now, || running),
                expected,
                "{held:?} running={running}"
            );
        }
    }
}
