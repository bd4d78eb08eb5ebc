//! WATCH: a stream of events from a resourceVersion, or a streaming list (initial events, then the watch).

use crate::body::Body;
use crate::selectors::Filter;
use crate::status::{ApiError, Cause, CauseKind};
use crate::store::WatchStart;
use crate::util;
use crate::watch::{self, WatchRequest};
use std::time::Duration;
use tokio::sync::mpsc;

use super::resource::{Ctx, Handled};

impl Ctx<'_> {
    pub(super) fn watch(&self, filter: Filter) -> Handled {
        let q = &self.q;
        // A server without the feature (or behind a proxy that strips what it does not know) never sees them.
        let ignore = self.shared.opts.ignore_watch_list_params;
        let send_initial = q.opt_bool("sendInitialEvents").filter(|_| !ignore);
        let rvm = q.non_empty("resourceVersionMatch").filter(|_| !ignore);
        let cont = q.non_empty("continue");
        let mut causes = Vec::new();
        let forbid = |d: String| Cause {
            field: "resourceVersionMatch",
            kind: CauseKind::Forbidden(d),
        };
        if send_initial.is_some() {
            if rvm != Some("NotOlderThan") {
                causes.push(forbid(
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                        .into(),
                ));
            }
            if !self.shared.opts.watch_list {
                causes.push(Cause {
                    field: "sendInitialEvents",
                    kind: CauseKind::Forbidden(
                        "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled".into(),
                    ),
                });
            }
        }
        if let Some(m) = rvm {
            if send_initial.is_none() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
                ));
            }
            if m != "NotOlderThan" {
                causes.push(Cause {
                    field: "resourceVersionMatch",
                    kind: CauseKind::NotSupported {
                        value: m.into(),
                        supported: &["NotOlderThan"],
                    },
                });
            }
            if cont.is_some() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden when continue is provided".into(),
                ));
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_list_options(causes));
        }
        let rv = self.parse_rv()?;
        let from = rv.filter(|n| *n > 0);
        // With the WatchList feature on, a plain watch from ""/"0" is defaulted to a
        // streaming list (so it also gets the initial-events-end bookmark).
        let send_initial = match send_initial {
            None if rvm.is_none() && self.shared.opts.watch_list && !ignore && from.is_none() => {
                Some(true)
            }
            s => s,
        };
        let start = match (send_initial, from) {
            (Some(true), _) | (None, None) => WatchStart::Initial,
            (Some(false), None) => WatchStart::Latest,
            (_, Some(n)) => WatchStart::From(n),
        };
        let bookmarks = q.bool("allowWatchBookmarks");
        let timeout = match q.non_empty("timeoutSeconds") {
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds \"{s}\"")))?,
            None => 0,
        };
        let timeout = if timeout > 0 {
            Duration::from_secs(timeout as u64)
        } else {
            // The apiserver's default: min-request-timeout (1800 s) × [1, 2).
            Duration::from_secs(1800 + util::random_below(1800))
        };
        let req = WatchRequest {
            kind: self.kind,
            filter,
            start,
            min_rv: from,
            bookmarks,
            initial_events_end: send_initial == Some(true) && bookmarks,
            timeout,
            shape: self.shape,
            client: self.client.clone(),
        };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(watch::run(self.shared.clone(), req, tx));
        let mut resp = self.respond(200, Vec::new());
        *resp.body_mut() = Body::Stream(rx);
        Ok(resp)
    }
}
