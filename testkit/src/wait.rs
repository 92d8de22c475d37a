//! The one wait of the tests and benchmarks: poll an observable condition
//! until it holds, fail naming it after a timeout. Never a bare sleep.

use std::fmt::{self, Display};
use std::time::{Duration, Instant};

/// Polls `check` until it holds; panics after `secs` seconds, naming
/// `what`. The one wait of the tests: polls every 5 ms at first (a state
/// that shows up quickly is seen quickly), backing off to every 100 ms.
#[track_caller]
pub fn wait_until(what: impl Display, secs: u64, mut check: impl FnMut() -> bool) {
    wait_for(what, secs, || check().then_some(()))
}

/// [`wait_until`] for a probe that gives a value once the condition holds;
/// returns that value.
#[track_caller]
pub fn wait_for<T>(what: impl Display, secs: u64, probe: impl FnMut() -> Option<T>) -> T {
    poll(
        what,
        secs,
        Duration::from_millis(5),
        Duration::from_millis(100),
        probe,
    )
}

/// [`wait_for`] polling every `every` (no back-off): for a benchmark that
/// times how long the condition takes to show.
#[track_caller]
pub fn wait_for_every<T>(
    what: impl Display,
    secs: u64,
    every: Duration,
    probe: impl FnMut() -> Option<T>,
) -> T {
    poll(what, secs, every, every, probe)
}

#[track_caller]
fn poll<T>(
    what: impl Display,
    secs: u64,
    first: Duration,
    longest: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut pause = first;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(longest);
    }
}

/// A `what` for [`wait_until`] and [`wait_for`] computed only when the
/// wait fails (to show the state it ended in): `Lazy(|| format!(..))`.
pub struct Lazy<F: Fn() -> String>(pub F);

impl<F: Fn() -> String> Display for Lazy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}
