//! How a failed watch retries.
//!
//! kube-runtime's default (client-go's reflector parameters: 0.8 s doubling
//! up to 30 s, with jitter) let the operator stay not ready for up to half a
//! minute after the API server came back: in the fault suite
//! (tests/chaos/restarts.rs) a 5 s outage of kube-apiserver left it unready
//! 14 to 25 s after the API server was ready again, each watch waiting out
//! its backoff. The operator runs a dozen watches; retrying each at most
//! 2 s apart (4 s with jitter) during an outage costs the API server a few
//! requests a second, and bounds the wait after it is back to about 4 s.

use std::time::Duration;

use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;

/// The first retry of a failed watch.
const FIRST: Duration = Duration::from_millis(500);
/// The longest wait between retries.
const LONGEST: Duration = Duration::from_secs(2);
/// A watch that has not failed for this long starts again from [`FIRST`].
const RESET_AFTER: Duration = Duration::from_secs(120);

/// The backoff of one watch: 0.5 s doubling up to 2 s, with jitter (which
/// adds up to the delay itself).
pub fn watch() -> ResetTimerBackoff<ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(FIRST)
        .with_max_delay(LONGEST)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), RESET_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_soon_and_never_wait_more_than_a_few_seconds() {
        let delays: Vec<Duration> = watch().take(20).collect();
        assert_eq!(delays.len(), 20, "a watch retries for ever");
        assert!(delays[0] >= FIRST && delays[0] <= FIRST * 2, "{delays:?}");
        // Jitter adds up to the delay itself.
        assert!(delays.iter().all(|d| *d <= LONGEST * 2), "{delays:?}");
        assert!(delays[10..].iter().all(|d| *d >= LONGEST), "{delays:?}");
    }
}
