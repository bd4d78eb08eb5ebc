//! A paged LIST into a complete view, and publishing it.

use crate::client::{ApiError, MAX_BODY_BYTES, read_body};
use crate::log::{escape_server_text, log_at};
use crate::model::List;
use crate::model::Object;
use crate::publish::Publisher;
use crate::store::{Metric, StoreError};
use crate::sync_state::{ListFrom, Outcome};
use crate::view::View;
use serde_json::value::RawValue;
use std::time::Duration;

use super::{Watcher, decode_error_text, owner_lost};

/// Items per LIST page.
const PAGE_SIZE: u32 = 500;
/// Longest silence tolerated while reading a LIST response.
const LIST_READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Watcher {
    /// Lists everything and, when the list is complete, replaces the stored view with it.
    pub(super) async fn list_and_publish(
        &mut self,
        p: &mut Publisher<'_>,
    ) -> Result<Outcome, StoreError> {
        let deadline = self.list_timeout;
        let from = self.machine.list_from();
        let listed = tokio::select! {
            r = tokio::time::timeout(deadline, self.list(&from)) => r.unwrap_or_else(|_| {
                Err(ApiError::Transport(format!(
                    "the list did not finish within {}s (list_timeout)",
                    deadline.as_secs()
                )))
            }),
            _ = owner_lost(p) => return Err(StoreError::Superseded),
        };
        match listed {
            Ok((view, rv)) => {
                p.replace_all(&view).await?;
                log_at!(
                    Info,
                    "{}: listed {} service(s) from {} at resourceVersion {rv}",
                    self.label,
                    view.len(),
                    self.resource.name()
                );
                self.view = view;
                // The old view, and what parsing the new one left behind, are free now.
                crate::runtime::release_freed_memory();
                p.clear_error().await?;
                Ok(Outcome::Listed { rv })
            }
            Err(e) => {
                let msg = format!("list {} failed: {e}", self.resource.name());
                log_at!(Error, "{}: {msg}", self.label);
                p.count(Metric::ListErrors, 1);
                p.set_error(&msg).await?;
                Ok(Outcome::ListFailed {
                    retry_after: e.retry_after(),
                    gone: e.is_rv_unavailable(),
                })
            }
        }
    }

    /// Lists every page into a fresh view. A continue token that expired restarts the list from the beginning,
    /// unpaged: a paged list that cannot finish within the token lifetime would otherwise never finish.
    ///
    /// `from` sets the first request's resourceVersion: unset (the latest state), "0" (the server's watch cache,
    /// which ignores `limit` and answers everything at once) or N with `resourceVersionMatch=NotOlderThan` (not
    /// older than N: without the match a limit would make it exactly N, which fails once N is compacted). All
    /// are paged, so no response holds the whole cluster; later pages carry only the continue token, which holds
    /// the list's resourceVersion.
    pub(super) async fn list(&self, from: &ListFrom) -> Result<(View, String), ApiError> {
        let (first_rv, rv_match) = match from {
            ListFrom::Latest => (None, None),
            ListFrom::Any => (Some("0"), None),
            ListFrom::NotOlderThan(rv) => (Some(rv.as_str()), Some("NotOlderThan")),
        };
        let mut paged = true;
        'restart: loop {
            let mut view = View::new(self.selector.clone(), self.topology.clone());
            let mut cont: Option<String> = None;
            let mut rv: Option<String> = None;
            loop {
                let limit = PAGE_SIZE.to_string();
                let mut params = Vec::new();
                if paged {
                    params.push(("limit", limit.as_str()));
                }
                match &cont {
                    Some(c) => params.push(("continue", c)),
                    None => {
                        if let Some(r) = first_rv {
                            params.push(("resourceVersion", r));
                        }
                        if let Some(m) = rv_match {
                            params.push(("resourceVersionMatch", m));
                        }
                    }
                }
                let resp = match self.client.get(&self.query(&params)).await {
                    Err(e) if e.is_gone() && cont.is_some() && paged => {
                        paged = false;
                        log_at!(
                            Info,
                            "{}: list continue token expired ({e}); listing again without paging",
                            self.label
                        );
                        continue 'restart;
                    }
                    other => other?,
                };
                let body = read_body(resp.into_body(), MAX_BODY_BYTES, LIST_READ_TIMEOUT).await?;
                // Items stay raw text sliced from the body until each is parsed on its own: no tree of the whole
                // page is ever built.
                let page: List<&RawValue> = serde_json::from_slice(&body).map_err(|e| {
                    ApiError::Decode(format!(
                        "{} list: {}",
                        self.resource.name(),
                        decode_error_text(e)
                    ))
                })?;
                // A 200 that is not a list of the expected kind (a proxy's page, a Status) must never be taken
                // for an empty cluster: that would delete everything.
                let expected_kind = format!("{}List", self.resource.name());
                if page.kind.as_deref().is_some_and(|k| k != expected_kind) {
                    return Err(ApiError::Decode(format!(
                        "expected a {expected_kind}, got kind \"{}\"",
                        escape_server_text(&page.kind.unwrap_or_default(), 64)
                    )));
                }
                for item in page.items.unwrap_or_default() {
                    let text = item.get();
                    let parsed = if text.len() > self.max_object_size {
                        Err(self.oversized(text.len()))
                    } else {
                        Object::parse(self.resource, text, self.topology.is_on())
                            .map_err(|e| e.to_string())
                    };
                    match parsed {
                        Ok(obj) => {
                            view.apply(obj);
                        }
                        Err(e) => match self.resource.service_of(text) {
                            Some((ns, name)) => self.keep_previous(&mut view, &ns, &name, &e),
                            None => {
                                return Err(ApiError::Decode(format!(
                                    "malformed {} without a readable name: {}",
                                    self.resource.name(),
                                    decode_error_text(e)
                                )));
                            }
                        },
                    }
                }
                // All pages share the first page's resourceVersion (one consistent snapshot).
                if rv.is_none() {
                    rv = page.metadata.resource_version.clone();
                }
                match page.metadata.next_page() {
                    Some(c) => cont = Some(c.to_string()),
                    None => break,
                }
            }
            let rv = rv
                .filter(|r| !r.is_empty())
                .ok_or_else(|| ApiError::Decode("list without resourceVersion".into()))?;
            return Ok((view, rv));
        }
    }
}
