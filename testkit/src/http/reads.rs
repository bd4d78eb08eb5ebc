//! GET of one object and LIST of a collection: resourceVersion semantics, pages and continue tokens.

use crate::listing;
use crate::selectors::Filter;
use crate::state::typed;
use crate::status::{ApiError, Cause, CauseKind};

use super::resource::{Ctx, Handled};

impl Ctx<'_> {
    pub(super) fn get(&self, name: &str) -> Handled {
        self.shared.stats.get();
        let ns = self.ns.as_deref().unwrap_or("");
        let obj = self
            .shared
            .store()
            .get(self.kind, ns, name)
            .ok_or_else(|| ApiError::not_found(self.kind, name))?;
        Ok(self.object(200, &typed(self.kind, &obj)))
    }

    pub(super) fn parse_rv(&self) -> Result<Option<u64>, ApiError> {
        match self.q.non_empty("resourceVersion") {
            None => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{s}\""))),
        }
    }

    /// Waits (up to the too-large wait, 3 s by default) for the store to reach `rv`.
    pub(super) async fn wait_for_rv(&self, rv: u64) -> Result<(), ApiError> {
        let mut rx = self.shared.rv_rx.clone();
        let waited =
            tokio::time::timeout(self.shared.opts.too_large_wait, rx.wait_for(|c| *c >= rv)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::too_large(rv, *self.shared.rv_rx.borrow())),
        }
    }

    pub(super) async fn list(&self, filter: Filter) -> Handled {
        let rv_str = self.q.get("resourceVersion").unwrap_or("");
        let rvm = self.q.non_empty("resourceVersionMatch");
        let cont = self.q.non_empty("continue");
        let mut causes = Vec::new();
        if self.q.opt_bool("sendInitialEvents").is_some() {
            causes.push(Cause {
                field: "sendInitialEvents",
                kind: CauseKind::Forbidden("sendInitialEvents is forbidden for list".into()),
            });
        }
        if let Some(m) = rvm {
            let forbid = |d: &str| Cause {
                field: "resourceVersionMatch",
                kind: CauseKind::Forbidden(d.into()),
            };
            if rv_str.is_empty() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if cont.is_some() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            match m {
                "Exact" if rv_str == "0" => causes.push(forbid(
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                )),
                "Exact" | "NotOlderThan" => {}
                other => causes.push(Cause {
                    field: "resourceVersionMatch",
                    kind: CauseKind::NotSupported {
                        value: other.into(),
                        supported: &["Exact", "NotOlderThan"],
                    },
                }),
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_list_options(causes));
        }
        if cont.is_some() && !rv_str.is_empty() && rv_str != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let limit = match self.q.non_empty("limit") {
            None => 0,
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit \"{s}\"")))?
                .max(0) as usize,
        };
        // A server may return fewer items than asked for (with a continue token for the rest).
        let limit = match self.shared.opts.max_page_size {
            Some(cap) if limit > 0 => limit.min(cap.max(1)),
            _ => limit,
        };
        let rv = self.parse_rv()?;
        self.shared.stats.list();
        let kind = self.kind;

        let (list_rv, page) = if let Some(tok) = cont {
            let (trv, start) = listing::decode_token(tok).map_err(ApiError::bad_request)?;
            let mut st = self.shared.store();
            let (list_rv, snap) = if trv <= 0 {
                // rv -1: the client accepted an inconsistent continuation from "now".
                let now = st.rv();
                (now, st.snapshot_now(kind))
            } else {
                let trv = trv as u64;
                let ttl = self.shared.opts.continue_ttl;
                let fresh = !self.expire_continue
                    && st
                        .token_issued_at(kind, trv)
                        .is_some_and(|t| ttl.is_none_or(|ttl| t.elapsed() <= ttl));
                match fresh.then(|| st.state_at(kind, trv)).flatten() {
                    Some(s) => (trv, s),
                    None => {
                        return Err(ApiError::continue_expired(Some(listing::encode_token(
                            -1, &start,
                        ))));
                    }
                }
            };
            let page = listing::page(&snap, &filter, &start, limit);
            if page.next_start.is_some() {
                st.issue_token(kind, list_rv);
            }
            (list_rv, page)
        } else {
            let exact = matches!(rv, Some(n) if n > 0)
                && (rvm == Some("Exact") || (rvm.is_none() && limit > 0));
            if let Some(n) = rv.filter(|n| *n > 0) {
                self.wait_for_rv(n).await?;
            }
            // RV "0" is served from the "cache", which ignores limit.
            let limit = if rv == Some(0) { 0 } else { limit };
            let mut st = self.shared.store();
            if let (true, Some(n)) = (exact, rv) {
                let floor = st.floor(kind);
                let snap = st
                    .state_at(kind, n)
                    .ok_or_else(|| ApiError::too_old(n, floor))?;
                let page = listing::page(&snap, &filter, "", limit);
                if page.next_start.is_some() {
                    st.issue_token(kind, n);
                }
                (n, page)
            } else {
                let now = st.rv();
                let page = listing::page(st.objects(kind), &filter, "", limit);
                if page.next_start.is_some() {
                    st.snapshot_now(kind);
                    st.issue_token(kind, now);
                }
                (now, page)
            }
        };
        let token = page
            .next_start
            .as_deref()
            .map(|s| listing::encode_token(list_rv as i64, s));
        Ok(self.respond(
            200,
            listing::render(kind, list_rv, &page, token.as_deref(), &filter),
        ))
    }
}
