//! The per-cluster list/watch state machine: what to do next, decided from what the last step produced. Pure:
//! no I/O and no clock reads, so every transition is tested directly; `watcher` performs the steps.
//!
//! ```text
//!            Listed(rv)                        WatchEnded: clean, with progress
//!   List ───────────────▶ Watch(rv) ◀────────────────────────────┐
//!    ▲  │                  │  │                                   │
//!    │  │ ListFailed        │  └────────────────────────────────────┘
//!    │  ▼                  │ WatchEnded: 410 (the first one since a healthy watch: List at once;
//!    │ BackOff(d, List)    │             repeated ones: BackOff(d, List))
//!    │                     │ WatchEnded: failed, or clean at once with nothing delivered
//!    │                     ▼
//!    └──────────────── BackOff(d, Watch(rv))  ──Waited──▶ Watch(rv)
//! ```
//!
//! The back-off grows on every failure and resets only when a watch proved healthy: it delivered changes or
//! bookmarks, or stayed open for `HEALTHY_WATCH`. A watch that fails at once (an in-stream 410 for a list slower
//! than the server's watch history) therefore backs off instead of relisting in a loop.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::store::SyncState;

/// A watch that stayed open this long counts as healthy even if nothing happened on it.
pub const HEALTHY_WATCH: Duration = Duration::from_secs(30);
/// A watch that ends cleanly sooner than this without delivering anything is treated as a failure (else an
/// endpoint that closes every watch at once would be hammered).
const INSTANT_END: Duration = Duration::from_secs(1);

/// What the watcher does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// List everything (at start, and after a 410): the complete view replaces the stored one.
    List,
    /// Watch from this resourceVersion.
    Watch { rv: String },
    /// Wait `delay`, then do `then` (a `List` or a `Watch`).
    BackOff { delay: Duration, then: Box<State> },
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// The server closed the stream normally (its timeout, or a proxy's).
    Clean,
    /// 410 in any form: the resourceVersion is too old to resume from.
    Gone,
    /// Anything else: transport error, 429/5xx, a dead connection. `retry_after` is the server's hint.
    Failed { retry_after: Option<Duration> },
}

/// What the last step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A complete list at this resourceVersion was published.
    Listed {
        rv: String,
    },
    ListFailed {
        retry_after: Option<Duration>,
    },
    /// A watch ended. `rv` is the last resourceVersion it reached; `progressed` whether it delivered changes
    /// or bookmarks; `lasted` how long it was open.
    WatchEnded {
        end: WatchEnd,
        rv: String,
        progressed: bool,
        lasted: Duration,
    },
    /// A back-off delay passed.
    Waited,
}

/// The state plus what transitions need to remember.
pub struct Machine {
    state: State,
    backoff: Backoff,
    /// 410s since the last healthy watch: the first relists at once, later ones back off.
    gone_streak: u32,
}

impl Machine {
    pub fn new(backoff: Backoff) -> Machine {
        Machine {
            state: State::List,
            backoff,
            gone_streak: 0,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state shown in the dump.
    pub fn sync_state(&self) -> SyncState {
        match self.state {
            State::List => SyncState::Listing,
            State::Watch { .. } => SyncState::Watching,
            State::BackOff { .. } => SyncState::Backoff,
        }
    }

    /// The random source for other spreads (watch timeouts), shared with the back-off's jitter.
    pub fn random_below(&mut self, n: u64) -> u64 {
        self.backoff.random_below(n)
    }

    /// Moves to the next state given what the current one produced.
    pub fn step(&mut self, outcome: Outcome) -> &State {
        let state = std::mem::replace(&mut self.state, State::List);
        self.state = match (state, outcome) {
            (State::List, Outcome::Listed { rv }) => State::Watch { rv },
            (State::List, Outcome::ListFailed { retry_after }) => {
                self.back_off(retry_after, State::List)
            }
            (
                State::Watch { .. },
                Outcome::WatchEnded {
                    end,
                    rv,
                    progressed,
                    lasted,
                },
            ) => {
                if progressed || lasted >= HEALTHY_WATCH {
                    self.backoff.reset();
                    self.gone_streak = 0;
                }
                match end {
                    WatchEnd::Clean if !progressed && lasted < INSTANT_END => {
                        self.back_off(None, State::Watch { rv })
                    }
                    WatchEnd::Clean => State::Watch { rv },
                    WatchEnd::Gone => {
                        self.gone_streak += 1;
                        if self.gone_streak == 1 {
                            State::List
                        } else {
                            self.back_off(None, State::List)
                        }
                    }
                    WatchEnd::Failed { retry_after } => {
                        self.back_off(retry_after, State::Watch { rv })
                    }
                }
            }
            (State::BackOff { then, .. }, Outcome::Waited) => *then,
            // An outcome that does not belong to the state (a bug in the driver): start over cleanly.
            (_, _) => State::List,
        };
        &self.state
    }

    fn back_off(&mut self, retry_after: Option<Duration>, then: State) -> State {
        State::BackOff {
            delay: self.backoff.next_delay(retry_after),
            then: Box::new(then),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine::new(Backoff::with_seed(7))
    }

    fn watch(rv: &str) -> State {
        State::Watch { rv: rv.into() }
    }

    fn ended(end: WatchEnd, rv: &str, progressed: bool, lasted_s: u64) -> Outcome {
        Outcome::WatchEnded {
            end,
            rv: rv.into(),
            progressed,
            lasted: Duration::from_secs(lasted_s),
        }
    }

    /// The delay of a back-off state, and what follows it.
    fn backoff(s: &State) -> (Duration, State) {
        match s {
            State::BackOff { delay, then } => (*delay, (**then).clone()),
            other => panic!("expected a back-off, got {other:?}"),
        }
    }

    fn failed() -> WatchEnd {
        WatchEnd::Failed { retry_after: None }
    }

    #[test]
    fn a_list_leads_to_a_watch_from_its_resource_version() {
        let mut m = machine();
        assert_eq!(m.state(), &State::List);
        assert_eq!(m.sync_state(), SyncState::Listing);
        assert_eq!(m.step(Outcome::Listed { rv: "10".into() }), &watch("10"));
        assert_eq!(m.sync_state(), SyncState::Watching);
    }

    #[test]
    fn failed_lists_back_off_with_growing_delays_and_list_again() {
        let mut m = machine();
        let mut last = Duration::ZERO;
        for i in 0..4 {
            let (delay, then) = backoff(m.step(Outcome::ListFailed { retry_after: None }));
            assert_eq!(then, State::List);
            assert_eq!(m.sync_state(), SyncState::Backoff);
            let base = Duration::from_millis(800) * 2u32.pow(i);
            assert!(delay >= base && delay < base * 2, "attempt {i}: {delay:?}");
            assert!(delay > last);
            last = delay;
            assert_eq!(m.step(Outcome::Waited), &State::List);
        }
        let (delay, _) = backoff(m.step(Outcome::ListFailed {
            retry_after: Some(Duration::from_secs(60)),
        }));
        assert!(
            delay >= Duration::from_secs(60),
            "Retry-After is a lower bound"
        );
    }

    #[test]
    fn a_clean_end_watches_again_from_the_last_resource_version() {
        let mut m = machine();
        m.step(Outcome::Listed { rv: "10".into() });
        assert_eq!(
            m.step(ended(WatchEnd::Clean, "15", true, 240)),
            &watch("15")
        );
        // Quiet but long: also fine.
        assert_eq!(
            m.step(ended(WatchEnd::Clean, "15", false, 240)),
            &watch("15")
        );
        // Closed at once with nothing delivered: back off before watching again.
        let (_, then) = backoff(m.step(ended(WatchEnd::Clean, "15", false, 0)));
        assert_eq!(then, watch("15"));
    }

    #[test]
    fn a_failed_watch_backs_off_then_resumes_where_it_was() {
        let mut m = machine();
        m.step(Outcome::Listed { rv: "10".into() });
        let (delay, then) = backoff(m.step(ended(
            WatchEnd::Failed {
                retry_after: Some(Duration::from_secs(5)),
            },
            "12",
            true,
            3,
        )));
        assert!(delay >= Duration::from_secs(5));
        assert_eq!(then, watch("12"));
        assert_eq!(m.step(Outcome::Waited), &watch("12"));
    }

    #[test]
    fn the_first_410_relists_at_once_and_repeated_ones_back_off() {
        let mut m = machine();
        m.step(Outcome::Listed { rv: "10".into() });
        // An in-stream ERROR 410 right away: no progress, so the back-off is not reset.
        assert_eq!(m.step(ended(WatchEnd::Gone, "10", false, 0)), &State::List);
        m.step(Outcome::Listed { rv: "20".into() });
        let (first, then) = backoff(m.step(ended(WatchEnd::Gone, "20", false, 0)));
        assert_eq!(then, State::List);
        m.step(Outcome::Waited);
        m.step(Outcome::Listed { rv: "30".into() });
        let (second, _) = backoff(m.step(ended(WatchEnd::Gone, "30", false, 0)));
        assert!(second > first, "{second:?} after {first:?}");
    }

    #[test]
    fn only_a_healthy_watch_resets_the_back_off() {
        let mut m = machine();
        m.step(Outcome::Listed { rv: "1".into() });
        for _ in 0..4 {
            m.step(ended(failed(), "1", false, 1));
            m.step(Outcome::Waited);
        }
        let (grown, _) = backoff(m.step(ended(failed(), "1", false, 1)));
        assert!(grown >= Duration::from_millis(800) * 16);
        m.step(Outcome::Waited);
        // Progress (a change or a bookmark) resets it, even if the watch then fails.
        let (after_progress, _) = backoff(m.step(ended(failed(), "2", true, 1)));
        assert!(after_progress < Duration::from_millis(1600));
        m.step(Outcome::Waited);
        m.step(ended(failed(), "2", false, 1));
        m.step(Outcome::Waited);
        // So does a watch that stayed open long enough.
        let (after_long, _) = backoff(m.step(ended(failed(), "2", false, HEALTHY_WATCH.as_secs())));
        assert!(after_long < Duration::from_millis(1600));
        // And a healthy watch ends a streak of 410s: the next one relists at once again.
        m.step(Outcome::Waited);
        assert_eq!(m.step(ended(WatchEnd::Gone, "2", false, 0)), &State::List);
        m.step(Outcome::Listed { rv: "3".into() });
        assert!(matches!(
            m.step(ended(WatchEnd::Gone, "3", false, 0)),
            State::BackOff { .. }
        ));
        m.step(Outcome::Waited);
        m.step(Outcome::Listed { rv: "4".into() });
        assert_eq!(m.step(ended(WatchEnd::Gone, "4", true, 0)), &State::List);
    }

    #[test]
    fn an_outcome_that_does_not_fit_the_state_starts_over_with_a_list() {
        let mut m = machine();
        assert_eq!(m.step(Outcome::Waited), &State::List);
        m.step(Outcome::Listed { rv: "1".into() });
        assert_eq!(m.step(Outcome::Listed { rv: "2".into() }), &State::List);
    }
}
