//! The per-cluster list/watch state machine: what to do next, decided from what the last step produced. Pure:
//! no I/O and no clock reads, so every transition is tested directly; `watcher` performs the steps.
//!
//! ```text
//!          StreamUnsupported (auto: once, for good); StreamSilent, or the third StreamBadRequest in a row
//!          (auto: this sync only)
//!   StreamList ──────────────────────────────────────────▶ List
//!    │  ▲  │ Listed(rv): the end bookmark; the same           │ Listed(rv)
//!    │  │  │ connection goes on as the watch                   ▼
//!    │  │  └─────────────────────────────────────────▶ Watch(rv) ◀───────────────────────┐
//!    │  │                                                 │  │  WatchEnded: clean, with progress
//!    │  │ Relist (StreamList, or List once fallen back)   │  └──────────────────────────┘
//!    │  └─────────────────────────────────────────────────┤ WatchEnded: 410 (the first one since a healthy
//!    │                                                    │   watch: at once; repeated ones: after a back-off)
//!    │ ListFailed (ended, timed out or failed before the  │ WatchEnded: failed, or clean at once with nothing
//!    │   end bookmark; 410 as above), StreamBadRequest    ▼   delivered
//!    │   (before the third in a row)                      │
//!    └──▶ BackOff(d, Relist)              BackOff(d, Watch(rv)) ──Waited──▶ Watch(rv)
//! ```
//!
//! `StreamList` is one watch request with `sendInitialEvents=true`: its initial events build a complete view that
//! replaces the stored one on the `k8s.io/initial-events-end` bookmark, which is also where the watch begins.
//! `List` pages through LIST requests; it is the only list of `list_strategy: list`, and what `auto` falls back to
//! when the server refuses streaming lists. Either way nothing stored changes until a list is complete.
//!
//! A 400 to the streaming list request says nothing certain about the feature (a proxy hiccup is retried like any
//! failure), but a proxy that refuses the parameters answers 400 every time: after `STREAM_BAD_REQUESTS` of them in
//! a row, `auto` completes that sync with paged lists (retried as paged lists should they fail) and tries a streaming
//! list again at the next relist, as it does after a silent stream.
//!
//! The back-off grows on every failure and resets only when a watch proved healthy: it delivered changes or
//! bookmarks, or stayed open for `HEALTHY_WATCH`. Repeated 410s back off on a series of their own, reset the same
//! way: a watch that fails at once (an in-stream 410 for a list slower than the server's watch history) backs off
//! further each time instead of relisting in a loop, while a 410 met after waiting out other failures (the
//! history moved on meanwhile) is not held up again by the delay those failures built.
//!
//! Where a list starts from (`list_from`) follows the resourceVersion semantics of the API: a relist asks for
//! data not older than the last resourceVersion synced (the server's watch cache can serve that, and the
//! gateway never goes back in time); after the server answered that this resourceVersion is unavailable (410, or
//! 504 "too large"), the latest state.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::config::ListStrategy;
use crate::store::SyncState;

/// A watch that stayed open this long counts as healthy even if nothing happened on it.
pub const HEALTHY_WATCH: Duration = Duration::from_secs(30);
/// A watch that ends cleanly sooner than this without delivering anything is treated as a failure (else an
/// endpoint that closes every watch at once would be hammered).
const INSTANT_END: Duration = Duration::from_secs(1);
/// Consecutive 400 answers to the streaming list request after which `auto` lists that sync with pages. Three: one
/// or two can be a proxy's passing trouble, and streaming is worth two retries; the back-off before the second and
/// third (0.8 s, then 1.6 s, each with up to as much jitter) adds 2.4 to 4.8 s to a sync behind a proxy that
/// always refuses, about the 5 s of silence that identifies a server ignoring the parameters.
pub const STREAM_BAD_REQUESTS: u32 = 3;

/// What the watcher does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A streaming list (a watch with `sendInitialEvents=true`): its initial events build the complete view, which
    /// replaces the stored one on the end bookmark; the same connection then goes on as the watch.
    StreamList,
    /// List everything page by page (at start, and after a 410): the complete view replaces the stored one.
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

/// The resourceVersion a list (paged or streaming) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFrom {
    /// `resourceVersion` unset: the most recent state, a consistent read.
    Latest,
    /// `resourceVersion=0`: whatever state the server's watch cache holds (the first paged list of `auto`).
    Any,
    /// `resourceVersion=N`: a state not older than N, the resourceVersion last synced.
    NotOlderThan(String),
}

/// What the last step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A complete list at this resourceVersion was published (for a streaming list: its end bookmark arrived).
    Listed { rv: String },
    /// A list failed before it was complete. `gone`: the server answered that its resourceVersion (or continue
    /// token) is unavailable (410, or 504 "too large resource version").
    ListFailed {
        retry_after: Option<Duration>,
        gone: bool,
    },
    /// The server does not support streaming lists (422 or 405 for the request, or a stream that ignored
    /// `sendInitialEvents`: a plain bookmark before the end of the initial events).
    StreamUnsupported { retry_after: Option<Duration> },
    /// A streaming list fell silent for seconds before its end bookmark: a server that ignored `sendInitialEvents`
    /// and serves a plain watch, or one that paused. `auto` lists with paged LISTs this once.
    StreamSilent,
    /// The streaming list request was answered 400 (and not that its resourceVersion is unavailable): the server,
    /// or a proxy in front of it, refuses its parameters, or a passing fault. Retried after a back-off; the
    /// `STREAM_BAD_REQUESTS`th in a row makes `auto` list with paged LISTs for this sync.
    StreamBadRequest { retry_after: Option<Duration> },
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
    /// 410s since the last healthy watch: the first relists at once, later ones back off on `gone_backoff`.
    gone_streak: u32,
    gone_backoff: Backoff,
    strategy: ListStrategy,
    /// `auto` met a server without streaming lists: paged lists from now on.
    fell_back: bool,
    /// `auto` lists the current sync with pages (a silent stream, or repeated 400s); cleared once it is listed.
    paging_this_sync: bool,
    /// Streaming list requests answered 400 in a row.
    stream_bad_requests: u32,
    /// The resourceVersion last synced (a list's, or the last one a watch reached).
    synced_rv: Option<String>,
    /// The server answered that `synced_rv` is unavailable: the next list asks for the latest state.
    rv_unavailable: bool,
}

impl Machine {
    pub fn new(mut backoff: Backoff, strategy: ListStrategy) -> Machine {
        // Only a healthy watch ends a streak of 410s: a list slower than the server's watch history makes each
        // relist take minutes, and the time between them must not reset the delay.
        let gone_backoff = backoff.split().without_time_reset();
        let mut m = Machine {
            state: State::List,
            backoff,
            gone_streak: 0,
            gone_backoff,
            strategy,
            fell_back: false,
            paging_this_sync: false,
            stream_bad_requests: 0,
            synced_rv: None,
            rv_unavailable: false,
        };
        m.state = m.relist();
        m
    }

    /// Whether `auto` has fallen back to paged lists.
    #[cfg(test)]
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// The list this cluster does (at start and on every relist).
    fn relist(&self) -> State {
        match self.strategy {
            ListStrategy::List => State::List,
            ListStrategy::Auto if self.fell_back || self.paging_this_sync => State::List,
            ListStrategy::Auto | ListStrategy::WatchList => State::StreamList,
        }
    }

    /// The resourceVersion the next list asks for.
    pub fn list_from(&self) -> ListFrom {
        match (&self.synced_rv, self.strategy) {
            // Paged lists as configured: always a consistent read, page by page.
            (_, ListStrategy::List) => ListFrom::Latest,
            (Some(rv), _) if !self.rv_unavailable => ListFrom::NotOlderThan(rv.clone()),
            // The first paged list after a fallback is served from the watch cache, like the streaming list
            // it replaces would have been.
            (None, _) if self.fell_back && !self.rv_unavailable => ListFrom::Any,
            // A streaming list at "" is a consistent snapshot that the watch cache still serves (it only
            // confirms the current revision first), so a new or respawned watcher never starts from data
            // older than what is stored.
            _ => ListFrom::Latest,
        }
    }

    /// Whether a 400 to the streaming list now would make `auto` list this sync with pages.
    pub fn pages_on_bad_request(&self) -> bool {
        self.strategy == ListStrategy::Auto && self.stream_bad_requests + 1 >= STREAM_BAD_REQUESTS
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state shown in the dump.
    pub fn sync_state(&self) -> SyncState {
        match self.state {
            State::List | State::StreamList => SyncState::Listing,
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
        if state == State::StreamList && !matches!(outcome, Outcome::StreamBadRequest { .. }) {
            self.stream_bad_requests = 0;
        }
        self.state = match (state, outcome) {
            (State::List | State::StreamList, Outcome::Listed { rv }) => {
                self.synced_rv = Some(rv.clone());
                self.rv_unavailable = false;
                self.paging_this_sync = false;
                State::Watch { rv }
            }
            (State::List | State::StreamList, Outcome::ListFailed { retry_after, gone }) => {
                if gone {
                    self.rv_unavailable = true;
                    self.gone()
                } else {
                    self.back_off(retry_after, self.relist())
                }
            }
            (State::StreamList, Outcome::StreamSilent) => {
                if self.strategy == ListStrategy::Auto {
                    self.paging_this_sync = true;
                    State::List
                } else {
                    self.back_off(None, State::StreamList)
                }
            }
            (State::StreamList, Outcome::StreamBadRequest { retry_after }) => {
                if self.pages_on_bad_request() {
                    self.stream_bad_requests = 0;
                    self.paging_this_sync = true;
                    State::List
                } else {
                    self.stream_bad_requests += 1;
                    self.back_off(retry_after, State::StreamList)
                }
            }
            (State::StreamList, Outcome::StreamUnsupported { retry_after }) => {
                if self.strategy == ListStrategy::Auto {
                    self.fell_back = true;
                    State::List
                } else {
                    self.back_off(retry_after, State::StreamList)
                }
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
                    self.gone_backoff.reset();
                    self.gone_streak = 0;
                }
                self.synced_rv = Some(rv.clone());
                match end {
                    WatchEnd::Clean if !progressed && lasted < INSTANT_END => {
                        self.back_off(None, State::Watch { rv })
                    }
                    WatchEnd::Clean => State::Watch { rv },
                    WatchEnd::Gone => self.gone(),
                    WatchEnd::Failed { retry_after } => {
                        self.back_off(retry_after, State::Watch { rv })
                    }
                }
            }
            (State::BackOff { then, .. }, Outcome::Waited) => *then,
            // An outcome that does not belong to the state (a bug in the driver): start over cleanly.
            (_, _) => self.relist(),
        };
        &self.state
    }

    /// A 410: the first since a healthy watch relists at once, repeated ones after a back-off that grows with
    /// the streak.
    fn gone(&mut self) -> State {
        self.gone_streak += 1;
        if self.gone_streak == 1 {
            self.relist()
        } else {
            State::BackOff {
                delay: self.gone_backoff.next_delay(None),
                then: Box::new(self.relist()),
            }
        }
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

    /// The paged-list machine (`list_strategy: list`).
    fn machine() -> Machine {
        Machine::new(Backoff::with_seed(7), ListStrategy::List)
    }

    fn streaming(strategy: ListStrategy) -> Machine {
        Machine::new(Backoff::with_seed(7), strategy)
    }

    fn list_failed() -> Outcome {
        Outcome::ListFailed {
            retry_after: None,
            gone: false,
        }
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
            let (delay, then) = backoff(m.step(list_failed()));
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
            gone: false,
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
    fn a_repeated_410_is_not_held_up_by_the_back_off_of_other_failures() {
        let mut m = machine();
        m.step(Outcome::Listed { rv: "1".into() });
        assert_eq!(m.step(ended(WatchEnd::Gone, "1", false, 0)), &State::List);
        m.step(Outcome::Listed { rv: "2".into() });
        // The server fails for a while: the back-off grows past 10 s.
        for _ in 0..5 {
            m.step(ended(failed(), "2", false, 1));
            m.step(Outcome::Waited);
        }
        let (grown, _) = backoff(m.step(ended(failed(), "2", false, 1)));
        assert!(grown >= Duration::from_millis(800) * 32, "{grown:?}");
        m.step(Outcome::Waited);
        // Meanwhile the history moved on: the second 410 of the streak waits its own first step, not 25 s more.
        let (delay, then) = backoff(m.step(ended(WatchEnd::Gone, "2", false, 0)));
        assert_eq!(then, State::List);
        assert!(delay < Duration::from_millis(1600), "{delay:?}");
        // A failure after that still backs off on the grown delay.
        m.step(Outcome::Waited);
        m.step(Outcome::Listed { rv: "3".into() });
        let (after, _) = backoff(m.step(ended(failed(), "3", false, 1)));
        assert!(after >= Duration::from_secs(30), "{after:?}");
    }

    #[test]
    fn repeated_410s_back_off_further_even_when_each_list_takes_minutes() {
        let mut m = machine();
        m.step(Outcome::Listed { rv: "1".into() });
        assert_eq!(m.step(ended(WatchEnd::Gone, "1", false, 0)), &State::List);
        let mut last = Duration::ZERO;
        for i in 0..4u32 {
            // The list takes longer than the back-off's quiet spell, then its watch gets 410 at once.
            m.backoff.age(Duration::from_secs(150));
            m.gone_backoff.age(Duration::from_secs(150));
            m.step(Outcome::Listed {
                rv: format!("{}", i + 2),
            });
            let (delay, then) = backoff(m.step(ended(WatchEnd::Gone, "2", false, 0)));
            assert_eq!(then, State::List);
            let base = Duration::from_millis(800) * 2u32.pow(i);
            assert!(delay >= base && delay > last, "410 #{}: {delay:?}", i + 2);
            last = delay;
            m.step(Outcome::Waited);
        }
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
    fn a_streaming_list_becomes_the_watch_on_its_end_bookmark() {
        for strategy in [ListStrategy::Auto, ListStrategy::WatchList] {
            let mut m = streaming(strategy);
            assert_eq!(m.state(), &State::StreamList);
            assert_eq!(m.sync_state(), SyncState::Listing, "listing until the end");
            assert_eq!(m.list_from(), ListFrom::Latest, "a consistent first sync");
            assert_eq!(m.step(Outcome::Listed { rv: "10".into() }), &watch("10"));
            assert_eq!(m.sync_state(), SyncState::Watching);
            // A 410 on the watch relists with a streaming list, not older than what was synced.
            assert_eq!(
                m.step(ended(WatchEnd::Gone, "15", false, 0)),
                &State::StreamList
            );
            assert_eq!(m.list_from(), ListFrom::NotOlderThan("15".into()));
        }
    }

    #[test]
    fn a_stream_that_ends_before_its_end_bookmark_backs_off_and_lists_again() {
        let mut m = streaming(ListStrategy::Auto);
        let mut last = Duration::ZERO;
        for _ in 0..3 {
            let (delay, then) = backoff(m.step(list_failed()));
            assert_eq!(then, State::StreamList);
            assert!(delay > last, "{delay:?} after {last:?}");
            last = delay;
            assert_eq!(m.step(Outcome::Waited), &State::StreamList);
        }
        assert!(
            !m.fell_back(),
            "a failure is no reason to give up streaming lists"
        );
    }

    #[test]
    fn auto_falls_back_to_paged_lists_for_good_and_watch_list_backs_off() {
        let mut m = streaming(ListStrategy::Auto);
        assert_eq!(
            m.step(Outcome::StreamUnsupported { retry_after: None }),
            &State::List,
            "at once"
        );
        assert!(m.fell_back());
        assert_eq!(m.list_from(), ListFrom::Any, "served from the watch cache");
        m.step(Outcome::Listed { rv: "10".into() });
        // Every later relist is paged too.
        assert_eq!(m.step(ended(WatchEnd::Gone, "12", false, 0)), &State::List);
        assert_eq!(m.list_from(), ListFrom::NotOlderThan("12".into()));
        let (_, then) = backoff(m.step(list_failed()));
        assert_eq!(then, State::List);

        let mut m = streaming(ListStrategy::WatchList);
        for _ in 0..3 {
            let (_, then) = backoff(m.step(Outcome::StreamUnsupported { retry_after: None }));
            assert_eq!(then, State::StreamList);
            assert_eq!(m.step(Outcome::Waited), &State::StreamList);
        }
        assert!(!m.fell_back());
    }

    #[test]
    fn a_silent_streaming_list_is_listed_with_pages_once_and_streamed_again_at_the_next_relist() {
        let mut m = streaming(ListStrategy::Auto);
        assert_eq!(m.step(Outcome::StreamSilent), &State::List, "at once");
        assert!(
            !m.fell_back(),
            "a pause is no proof that the server lacks streaming lists"
        );
        assert_eq!(m.list_from(), ListFrom::Latest);
        m.step(Outcome::Listed { rv: "10".into() });
        assert_eq!(
            m.step(ended(WatchEnd::Gone, "12", false, 0)),
            &State::StreamList
        );
        let mut m = streaming(ListStrategy::WatchList);
        let (_, then) = backoff(m.step(Outcome::StreamSilent));
        assert_eq!(then, State::StreamList, "watch_list never lists with pages");
    }

    #[test]
    fn repeated_400s_on_the_streaming_list_are_listed_with_pages_for_that_sync_only() {
        let bad_request = || Outcome::StreamBadRequest { retry_after: None };
        let mut m = streaming(ListStrategy::Auto);
        for _ in 1..STREAM_BAD_REQUESTS {
            assert!(!m.pages_on_bad_request());
            let (_, then) = backoff(m.step(bad_request()));
            assert_eq!(then, State::StreamList, "a 400 may pass: retried");
            m.step(Outcome::Waited);
        }
        assert!(m.pages_on_bad_request());
        assert_eq!(m.step(bad_request()), &State::List, "at once");
        assert!(!m.fell_back());
        assert_eq!(m.list_from(), ListFrom::Latest);
        // A failed paged list is an ordinary failure, and the same sync goes on with pages.
        let (_, then) = backoff(m.step(list_failed()));
        assert_eq!(then, State::List);
        m.step(Outcome::Waited);
        m.step(Outcome::Listed { rv: "10".into() });
        // The next relist streams again, and counts its 400s afresh.
        assert_eq!(
            m.step(ended(WatchEnd::Gone, "12", false, 0)),
            &State::StreamList
        );
        assert!(!m.pages_on_bad_request());
        m.step(bad_request());
        m.step(Outcome::Waited);
        // Only 400s in a row count: another failure in between starts the count over.
        m.step(list_failed());
        m.step(Outcome::Waited);
        for _ in 1..STREAM_BAD_REQUESTS {
            assert!(matches!(m.step(bad_request()), State::BackOff { .. }));
            m.step(Outcome::Waited);
        }
        assert_eq!(m.step(bad_request()), &State::List);
        // watch_list never lists with pages.
        let mut m = streaming(ListStrategy::WatchList);
        for _ in 0..2 * STREAM_BAD_REQUESTS {
            assert!(!m.pages_on_bad_request());
            let (_, then) = backoff(m.step(bad_request()));
            assert_eq!(then, State::StreamList);
            m.step(Outcome::Waited);
        }
    }

    #[test]
    fn a_410_during_the_initial_events_relists_from_the_latest_state() {
        let mut m = streaming(ListStrategy::Auto);
        m.step(Outcome::Listed { rv: "10".into() });
        assert_eq!(
            m.step(ended(WatchEnd::Gone, "10", false, 0)),
            &State::StreamList
        );
        assert_eq!(m.list_from(), ListFrom::NotOlderThan("10".into()));
        // The relist itself is told that resourceVersion is gone: list at once (the first 410 since the
        // last healthy watch went to the watch), from the latest state.
        let gone = Outcome::ListFailed {
            retry_after: None,
            gone: true,
        };
        let (_, then) = backoff(m.step(gone.clone()));
        assert_eq!(then, State::StreamList, "a repeated 410 backs off");
        assert_eq!(m.list_from(), ListFrom::Latest);
        m.step(Outcome::Waited);
        m.step(Outcome::Listed { rv: "20".into() });
        assert_eq!(m.list_from(), ListFrom::NotOlderThan("20".into()));
        // After a healthy watch, the first 410 of a streaming list relists at once.
        m.step(ended(WatchEnd::Clean, "25", true, 60));
        m.step(ended(WatchEnd::Gone, "25", true, 0));
        assert_eq!(m.state(), &State::StreamList);
        assert!(matches!(m.step(gone), State::BackOff { .. }));
        let mut fresh = streaming(ListStrategy::Auto);
        assert_eq!(
            fresh.step(Outcome::ListFailed {
                retry_after: None,
                gone: true
            }),
            &State::StreamList
        );
        assert_eq!(fresh.list_from(), ListFrom::Latest);
        // A paged fallback told its resourceVersion is gone lists the latest state too, not the cache's.
        let mut m = streaming(ListStrategy::Auto);
        m.step(Outcome::StreamUnsupported { retry_after: None });
        m.step(Outcome::ListFailed {
            retry_after: None,
            gone: true,
        });
        assert_eq!(m.list_from(), ListFrom::Latest);
    }

    #[test]
    fn the_list_strategy_always_lists_the_latest_state_page_by_page() {
        let mut m = machine();
        assert_eq!(m.state(), &State::List);
        assert_eq!(m.list_from(), ListFrom::Latest);
        m.step(Outcome::Listed { rv: "10".into() });
        assert_eq!(m.step(ended(WatchEnd::Gone, "12", false, 0)), &State::List);
        assert_eq!(m.list_from(), ListFrom::Latest);
        // A stray outcome never leads it to streaming lists.
        assert_eq!(
            m.step(Outcome::StreamUnsupported { retry_after: None }),
            &State::List
        );
    }

    #[test]
    fn an_outcome_that_does_not_fit_the_state_starts_over_with_a_list() {
        let mut m = machine();
        assert_eq!(m.step(Outcome::Waited), &State::List);
        m.step(Outcome::Listed { rv: "1".into() });
        assert_eq!(m.step(Outcome::Listed { rv: "2".into() }), &State::List);
    }
}
