//! The seeded fault injector: picks one of the faults a real API server, network or proxy produces and applies
//! it to the fake, now (connection resets, compaction, restarts, expired tokens) or to its next matching
//! requests (queued faults).

use std::time::Duration;

use k8s_fake_apiserver::{FakeApiServer, Fault};

use crate::rng::Rng;

/// At most this many queued faults wait at a time, so that the watcher still gets through between them.
const MAX_PENDING: usize = 3;

/// Applies one random fault to requests under `prefix` (the watched resource's API group); returns its name.
pub fn inject(s: &FakeApiServer, rng: &mut Rng, prefix: &str) -> &'static str {
    let queued = |f: Fault| {
        if s.stats().faults_pending < MAX_PENDING {
            s.inject_fault(f);
        }
    };
    let watch = rng.chance(1, 2);
    match rng.weighted(&[10, 8, 8, 6, 6, 6, 5, 5, 6, 4, 4, 5, 4, 3]) {
        0 => {
            s.reset_watches();
            "reset-watches"
        }
        1 => {
            // Cut a watch or a list in the middle of a chunk (or of an event).
            queued(
                Fault::reset_after_bytes(prefix, rng.between(0, 3000) as usize).only_watch(watch),
            );
            if watch {
                "reset-watch-mid-chunk"
            } else {
                "reset-list-mid-chunk"
            }
        }
        2 => {
            let ms = rng.between(100, 2500);
            queued(Fault::stall(prefix, rng.between(0, 2000) as usize, Some(ms)).only_watch(watch));
            if watch { "stall-watch" } else { "stall-list" }
        }
        3 => {
            queued(
                Fault::response(prefix, 429)
                    .retry_after(1)
                    .only_watch(watch),
            );
            "429-retry-after"
        }
        4 => {
            let code = *rng.pick(&[500, 502, 503, 504]);
            queued(
                Fault::response(prefix, code)
                    .retry_after(rng.between(0, 1))
                    .only_watch(watch),
            );
            "5xx-status"
        }
        5 => {
            // What a proxy in front of the API server answers: plain text, not a Status.
            let f = match rng.below(3) {
                0 => Fault::response(prefix, 503).body(
                    "text/plain",
                    "upstream connect error or disconnect/reset before headers\n",
                ),
                1 => Fault::response(prefix, 502).body(
                    "text/html",
                    "<html><body><h1>502 Bad Gateway</h1></body></html>\n",
                ),
                _ => Fault::response(prefix, 200)
                    .body("text/plain", "service temporarily unavailable\n"),
            };
            queued(f.only_watch(watch));
            "plain-text-error"
        }
        6 => {
            // History compaction: resuming from an older resourceVersion gets 410.
            s.compact();
            "compact"
        }
        7 => {
            s.compact();
            s.close_watches();
            "compact-and-close"
        }
        8 => {
            s.restart(Duration::from_millis(rng.between(0, 800)));
            "restart"
        }
        9 => {
            s.expire_continue();
            "expire-continue-all"
        }
        10 => {
            queued(Fault::expire_continue(prefix));
            "expire-continue-next"
        }
        11 => {
            let (bytes, ms) = (rng.between(40, 600) as usize, rng.between(2, 25));
            queued(Fault::slow_body(prefix, bytes, ms).only_watch(watch));
            if watch {
                "slow-watch-body"
            } else {
                "slow-list-body"
            }
        }
        12 => {
            s.close_watches();
            "close-watches"
        }
        _ => {
            queued(Fault::delay_ms(prefix, rng.between(50, 1500)));
            "delay"
        }
    }
}
