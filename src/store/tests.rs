//! The store's tests: the region, records, the writer and batches, within one process and across forks.

use super::layout::*;
use super::record::*;
use super::writer::*;
use super::*;
use crate::model::Node;
use std::sync::atomic::Ordering;

fn nodes(n: usize, port: u16) -> Vec<Node> {
    (0..n)
        .map(|i| Node::new(format!("10.0.{}.{}", i / 250, i % 250), port))
        .collect()
}

fn get(r: &Region, key: &str) -> Option<(u64, u64, Vec<Node>)> {
    let mut buf = vec![0u8; 1 << 16];
    match r.lookup(key.as_bytes(), &mut buf) {
        Lookup::Found {
            hint,
            version,
            count,
            len,
            ..
        } => Some((hint, version, decode_nodes(&buf[..len], count))),
        Lookup::NotFound => None,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn put_lookup_unchanged_and_remove() {
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    assert_eq!(get(&r, "ns/a:http"), None);
    {
        let mut b = w.batch().unwrap();
        assert_eq!(b.put_port("ns/a:http", &nodes(3, 80)), Put::Written);
        assert_eq!(b.put_service("ns/a", &["http"]), Put::Written);
    }
    let (slot, v1, got) = get(&r, "ns/a:http").unwrap();
    assert_eq!(got, nodes(3, 80));
    let mut buf = [0u8; 64];
    assert!(r.is_current(slot, v1));
    // Same content: no new version.
    assert_eq!(
        w.batch().unwrap().put_port("ns/a:http", &nodes(3, 80)),
        Put::Unchanged
    );
    assert!(r.is_current(slot, v1));
    // New content: new version, same key.
    assert_eq!(
        w.batch().unwrap().put_port("ns/a:http", &nodes(2, 80)),
        Put::Written
    );
    let (_, v2, got) = get(&r, "ns/a:http").unwrap();
    assert!(v2 > v1);
    assert_eq!(got.len(), 2);
    assert_eq!(r.service_ports("ns/a"), Some(vec!["http".to_string()]));
    // A port key is not a service marker and vice versa.
    assert_eq!(get(&r, "ns/a"), None);
    assert!(w.batch().unwrap().remove("ns/a:http"));
    assert_eq!(get(&r, "ns/a:http"), None);
    assert!(!r.is_current(slot, v2));
    assert_eq!(r.lookup(b"ns/a:http", &mut buf), Lookup::NotFound);
}

/// Overwrites byte `at` of the record that `key` points to.
fn corrupt_record(r: &Region, key: &str, at: usize, value: u8) {
    let (off, _) = (0..r.slot_count())
        .filter_map(|i| {
            let loc = r
                .slot(r.table_gen() as usize, i)
                .loc
                .load(Ordering::Relaxed);
            decode_loc(loc, r.heap_words().len())
        })
        .find(|&(off, len)| {
            let bytes: Vec<u8> = r.heap_words()[off..off + round_up8(len) / 8]
                .iter()
                .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
                .collect();
            RecordView::parse(&bytes[..len]).is_some_and(|v| v.key == key.as_bytes())
        })
        .expect("record present");
    let word = &r.heap_words()[off + at / 8];
    let mut bytes = word.load(Ordering::Relaxed).to_le_bytes();
    bytes[at % 8] = value;
    word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
}

#[test]
fn a_record_contradicting_its_header_is_reported_corrupt_not_read() {
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    let mut b = w.batch().unwrap();
    b.put_port("ns/count:80", &nodes(2, 80));
    b.put_port("ns/host:80", &nodes(2, 80));
    b.put_port("ns/short:80", &nodes(2, 80));
    b.put_service("ns/svc", &["http", "grpc"]);
    drop(b);
    let mut buf = vec![0u8; 1 << 16];
    // count (bytes 8..12) says a billion nodes.
    corrupt_record(&r, "ns/count:80", 11, 0x40);
    assert_eq!(r.lookup(b"ns/count:80", &mut buf), Lookup::Corrupt);
    // The first node's host length (body byte 2; the key pads the header to 32 bytes) runs past the body.
    corrupt_record(&r, "ns/host:80", 32 + 2, 255);
    assert_eq!(r.lookup(b"ns/host:80", &mut buf), Lookup::Corrupt);
    // count says fewer nodes than the body holds.
    corrupt_record(&r, "ns/short:80", 8, 1);
    assert_eq!(r.lookup(b"ns/short:80", &mut buf), Lookup::Corrupt);
    // Service markers are checked the same way.
    corrupt_record(&r, "ns/svc", 8, 9);
    assert_eq!(r.find(b"ns/svc", KIND_SERVICE, &mut buf), Lookup::Corrupt);
    // Decoding a lying count never allocates for it.
    assert!(decode_nodes(&[0u8; 6], u32::MAX).capacity() <= 2);
    assert!(decode_names(&[0u8; 4], u32::MAX).capacity() <= 4);
}

#[test]
fn a_writer_that_died_inside_a_status_update_or_a_relayout_is_repaired() {
    let r = Region::create(1 << 20).unwrap();
    let h = r.header();
    let mut w = Writer::claim(&r, 1).unwrap();
    {
        let mut b = w.batch().unwrap();
        b.put_port("ns/a:80", &nodes(1, 80));
        b.put_port("ns/b:80", &nodes(2, 80));
    }
    w.relayout().unwrap();
    assert_eq!(r.table_gen(), 1, "table 1 is active");
    // A dead writer's leftovers: an odd status sequence, and table 0 half built by a re-layout it did not finish
    // (slots pointing anywhere, one slot left odd).
    h.status_seq.store(5, Ordering::Relaxed);
    for i in (0..r.slot_count()).step_by(3) {
        write_slot(r.slot(0, i), 0xdead, 7, encode_loc(i, 40));
    }
    r.slot(0, 5).seq.store(9, Ordering::Relaxed);
    let mut w = Writer::claim(&r, 1).unwrap();
    assert_eq!(h.status_seq.load(Ordering::Relaxed) & 1, 0);
    assert_eq!(r.table_gen(), 1, "claiming does not switch tables");
    assert_eq!(w.keys().count(), 2, "the index comes from the active table");
    assert_eq!(get(&r, "ns/b:80").unwrap().2, nodes(2, 80));
    // The next re-layout builds table 0 afresh: only the live keys, no odd slot.
    w.relayout().unwrap();
    assert_eq!(r.table_gen(), 2);
    let used: Vec<usize> = (0..r.slot_count())
        .filter(|&i| r.slot(0, i).loc.load(Ordering::Relaxed) != EMPTY)
        .collect();
    assert_eq!(used.len(), 2, "table 0 holds the two keys: {used:?}");
    assert!((0..r.slot_count()).all(|i| r.slot(0, i).seq.load(Ordering::Relaxed) & 1 == 0));
    let mut b = w.batch().unwrap();
    b.set_error("list failed: 503");
    b.put_port("ns/a:80", &nodes(3, 80));
    drop(b);
    assert_eq!(h.status_seq.load(Ordering::Relaxed) & 1, 0);
    assert_eq!(r.status().last_error, "list failed: 503");
    assert_eq!(get(&r, "ns/a:80").unwrap().2, nodes(3, 80));
    assert_eq!(get(&r, "ns/b:80").unwrap().2, nodes(2, 80));
}

#[test]
fn a_writer_killed_inside_a_slot_leaves_no_cached_pair_that_vouches_for_it() {
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    {
        let mut b = w.batch().unwrap();
        for i in 0..3 {
            b.put_port(&format!("ns/k{i}:80"), &nodes(i + 1, 80));
        }
    }
    let (gone_hint, gone_version, _) = get(&r, "ns/k0:80").unwrap();
    let (kept_hint, kept_version, kept_nodes) = get(&r, "ns/k1:80").unwrap();
    let slot = |hint: u64| r.slot(r.table_gen() as usize, hint as u32 as usize);
    // A writer killed inside the removal of k0, after the tombstone and before the version was cleared, and inside
    // a rewrite of k1's slot, after its sequence went odd: both slots keep a version that workers have cached.
    let s = slot(gone_hint);
    s.seq.fetch_or(1, Ordering::Relaxed);
    s.loc.store(TOMBSTONE, Ordering::Relaxed);
    slot(kept_hint).seq.fetch_or(1, Ordering::Relaxed);
    drop(w);
    let _w = Writer::claim(&r, 1).unwrap();
    assert!(
        !r.is_current(gone_hint, gone_version),
        "a removed key's cached pair is stale"
    );
    assert_eq!(get(&r, "ns/k0:80"), None);
    assert!(
        !r.is_current(kept_hint, kept_version),
        "a repaired slot gets a version never handed out"
    );
    let (_, version, served) = get(&r, "ns/k1:80").unwrap();
    assert_ne!(version, kept_version);
    assert_eq!(served, kept_nodes);
    assert_eq!(get(&r, "ns/k2:80").unwrap().2, nodes(3, 80));
}

#[test]
fn a_live_lock_holder_makes_claim_and_batch_fail_at_once_and_a_panic_releases_the_lock() {
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    r.hold_lock_as_stranger();
    assert!(matches!(w.batch(), Err(StoreError::Locked)));
    assert!(matches!(Writer::claim(&r, 1), Err(StoreError::Locked)));
    r.release_stranger_lock();
    let mut w = Writer::claim(&r, 1).unwrap();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut b = w.batch().unwrap();
        b.put_port("ns/a:80", &nodes(1, 80));
        panic!("inside a batch");
    }));
    assert!(unwound.is_err());
    assert_eq!(r.lock_holder_pid(), 0, "the lock was given back");
    assert!(w.batch().is_ok());
}

#[test]
fn the_services_and_endpoints_gauges_follow_puts_replaces_removes_and_a_new_writer() {
    let r = Region::create(1 << 20).unwrap();
    let gauges = |r: &Region| (r.metric(Metric::Services), r.metric(Metric::Endpoints));
    let mut w = Writer::claim(&r, 1).unwrap();
    let mut b = w.batch().unwrap();
    b.put_service("ns/a", &["http", "grpc"]);
    b.put_port("ns/a:http", &nodes(3, 80));
    b.put_port("ns/a:grpc", &nodes(2, 81));
    b.put_service("ns/b", &["http"]);
    b.put_port("ns/b:http", &nodes(4, 80));
    drop(b);
    assert_eq!(gauges(&r), (2, 9));
    let mut b = w.batch().unwrap();
    b.put_port("ns/a:http", &nodes(1, 80));
    b.remove("ns/b:http");
    b.remove("ns/b");
    drop(b);
    assert_eq!(gauges(&r), (1, 3));
    // A new writer (a restarted watcher) counts what the region holds.
    drop(w);
    let mut w = Writer::claim(&r, 1).unwrap();
    assert_eq!(gauges(&r), (1, 3));
    w.batch().unwrap().remove("ns/a:grpc");
    assert_eq!(gauges(&r), (1, 1));
}

#[test]
fn small_buffer_reports_needed_size() {
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    w.batch().unwrap().put_port("ns/big:80", &nodes(100, 80));
    let mut small = [0u8; 32];
    let Lookup::TooSmall { need } = r.lookup(b"ns/big:80", &mut small) else {
        panic!()
    };
    let mut buf = vec![0u8; need];
    assert!(matches!(
        r.lookup(b"ns/big:80", &mut buf),
        Lookup::Found { count: 100, .. }
    ));
}

#[test]
fn full_region_keeps_old_data_and_retries_when_space_frees() {
    let r = Region::create(MIN_REGION_BYTES).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    let mut b = w.batch().unwrap();
    assert_eq!(b.put_port("ns/a:80", &nodes(10, 80)), Put::Written);
    let mut fillers = 0;
    while b.put_port(&format!("ns/filler{fillers}:80"), &nodes(300, 80)) == Put::Written {
        fillers += 1;
    }
    assert!(fillers > 2);
    assert_eq!(b.put_port("ns/a:80", &nodes(1200, 81)), Put::Full);
    drop(b);
    assert_eq!(
        get(&r, "ns/a:80").unwrap().2,
        nodes(10, 80),
        "old content is still served"
    );
    assert_eq!(
        get(&r, &format!("ns/filler{fillers}:80")),
        None,
        "a new key that did not fit is not visible"
    );
    assert!(r.status().full_rejections >= 2);
    assert_eq!(w.held_back(), 2);
    // Freeing space lets the held-back updates land without the caller writing them again.
    let mut b = w.batch().unwrap();
    for i in 0..fillers {
        b.remove(&format!("ns/filler{i}:80"));
    }
    b.commit();
    assert_eq!(get(&r, "ns/a:80").unwrap().2, nodes(1200, 81));
    assert_eq!(
        get(&r, &format!("ns/filler{fillers}:80")).unwrap().2.len(),
        300
    );
    assert_eq!(w.held_back(), 0);
}

#[test]
fn churn_reuses_space() {
    let r = Region::create(256 * 1024).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    for round in 0..2000u32 {
        let mut b = w.batch().unwrap();
        let key = format!("ns/s{}:80", round % 50);
        assert_eq!(
            b.put_port(&key, &nodes(1 + (round as usize % 20), round as u16)),
            Put::Written
        );
        if round % 3 == 0 {
            b.remove(&format!("ns/s{}:80", (round + 7) % 50));
        }
    }
    assert!(
        r.status().heap_used < 64 * 1024,
        "freed records are reused: {:?}",
        r.status()
    );
}

#[test]
fn deleted_keys_do_not_fill_the_slot_table() {
    // 64 KiB: 256 slots. Far more distinct keys than slots come and go, a few live at a time.
    let r = Region::create(MIN_REGION_BYTES).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    for i in 0..20_000 {
        let mut b = w.batch().unwrap();
        assert_eq!(
            b.put_port(&format!("ns/svc{i}:80"), &nodes(1, 80)),
            Put::Written,
            "key {i}"
        );
        if i >= 5 {
            assert!(b.remove(&format!("ns/svc{}:80", i - 5)));
        }
    }
    assert_eq!(r.status().full_rejections, 0);
    for i in 19_995..20_000 {
        assert!(get(&r, &format!("ns/svc{i}:80")).is_some());
    }
    assert_eq!(get(&r, "ns/svc19994:80"), None);
    // A new writer (restart) sees the same table and keeps working.
    let mut w = Writer::claim(&r, 1).unwrap();
    assert_eq!(
        w.batch().unwrap().put_port("ns/after:80", &nodes(1, 80)),
        Put::Written
    );
    assert!(get(&r, "ns/svc19999:80").is_some());
}

#[test]
fn random_churn_at_high_load_never_reports_full() {
    // 256 slots, 150 live keys (59 %), removed in random order and replaced by new ones: tombstones inside
    // probe chains pile up unless the writer sweeps them while it runs, not only when it claims.
    let r = Region::create(MIN_REGION_BYTES).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    let mut live: Vec<String> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..60_000 {
        let mut b = w.batch().unwrap();
        if live.len() >= 150 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let victim = live.swap_remove((rng % live.len() as u64) as usize);
            assert!(b.remove(&victim));
        }
        let key = format!("ns/svc{i}:80");
        assert_eq!(b.put_port(&key, &nodes(1, 80)), Put::Written, "op {i}");
        live.push(key);
    }
    drop(w);
    assert_eq!(r.status().full_rejections, 0);
    for key in &live {
        assert!(get(&r, key).is_some(), "{key}");
    }
}

#[test]
fn deletes_and_inserts_at_the_live_key_limit_rarely_lay_the_table_out_afresh() {
    // 64 KiB: 256 slots, of which 7/8 (224) may hold live keys. Each delete leaves a tombstone where its key sat
    // in a probe chain; each insert then needs a fresh slot beyond the 7/8.
    let r = Region::create(MIN_REGION_BYTES).unwrap();
    let n = r.slot_count();
    let limit = n * 7 / 8;
    let key = |i: usize| format!("ns/svc{i}:80");
    let mut w = Writer::claim(&r, 1).unwrap();
    let mut b = w.batch().unwrap();
    for i in 0..limit {
        assert_eq!(b.put_port(&key(i), &nodes(1, 80)), Put::Written, "key {i}");
    }
    drop(b);
    const PAIRS: usize = 100;
    let before = r.table_gen();
    for p in 0..PAIRS {
        let mut b = w.batch().unwrap();
        assert!(b.remove(&key(p)));
        assert_eq!(
            b.put_port(&key(limit + p), &nodes(1, 80)),
            Put::Written,
            "pair {p}: a key that fits is stored"
        );
    }
    let relayouts = r.table_gen() - before;
    eprintln!(
        "{relayouts} re-layouts for {PAIRS} delete+insert pairs at {limit} of {n} slots live"
    );
    // A re-layout leaves room for n/16 tombstones before the next one.
    let bound = (PAIRS / (n / 16) + 1) as u64;
    assert!(relayouts <= bound, "{relayouts} re-layouts, over {bound}");
    for i in 0..PAIRS {
        assert_eq!(get(&r, &key(i)), None, "{}", key(i));
    }
    for i in PAIRS..limit + PAIRS {
        assert_eq!(get(&r, &key(i)).unwrap().2, nodes(1, 80), "{}", key(i));
    }
    // The live keys fill the table as before: one more is refused, whatever tombstones there are, and fits
    // once a key leaves.
    let extra = key(1_000_000);
    let mut b = w.batch().unwrap();
    assert_eq!(b.put_port(&extra, &nodes(1, 80)), Put::Full);
    assert_eq!(r.status().full_rejections, 1);
    assert!(b.remove(&key(PAIRS)));
    b.commit();
    assert_eq!(
        get(&r, &extra).unwrap().2,
        nodes(1, 80),
        "retried once room freed"
    );
    // A restarted writer sees the same table and the same limit.
    let mut w = Writer::claim(&r, 1).unwrap();
    let mut b = w.batch().unwrap();
    assert_eq!(b.put_port(&key(2_000_000), &nodes(1, 80)), Put::Full);
    assert!(b.remove(&key(PAIRS + 1)));
    assert_eq!(b.put_port(&key(2_000_000), &nodes(1, 80)), Put::Written);
}

#[test]
fn held_back_keys_are_counted_once_and_retried_only_after_space_frees() {
    let r = Region::create(MIN_REGION_BYTES).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    let mut b = w.batch().unwrap();
    assert_eq!(b.put_port("ns/filler:80", &nodes(2500, 80)), Put::Written);
    assert_eq!(b.put_port("ns/big:80", &nodes(2500, 81)), Put::Full);
    drop(b);
    for _ in 0..10 {
        w.batch().unwrap().set_state(SyncState::Watching);
    }
    assert_eq!(r.status().full_rejections, 1);
    w.batch().unwrap().remove("ns/filler:80");
    assert_eq!(
        get(&r, "ns/big:80"),
        None,
        "a batch dropped without commit retries nothing"
    );
    w.batch().unwrap().commit();
    assert_eq!(get(&r, "ns/big:80").unwrap().2.len(), 2500);
    assert_eq!(r.status().pending_full, 0);
}

#[test]
fn an_older_generation_cannot_claim_the_region_back() {
    let r = Region::create(1 << 20).unwrap();
    let mut new = Writer::claim(&r, 2).unwrap();
    assert!(matches!(Writer::claim(&r, 1), Err(StoreError::Superseded)));
    assert!(new.is_owner());
    assert_eq!(
        new.batch().unwrap().put_port("ns/a:80", &nodes(1, 80)),
        Put::Written
    );
    // The same generation (a respawned watcher of the current configuration) may take over.
    let _respawned = Writer::claim(&r, 2).unwrap();
    assert!(matches!(new.batch(), Err(StoreError::Superseded)));
}

#[test]
fn second_writer_supersedes_first() {
    let r = Region::create(1 << 20).unwrap();
    let mut a = Writer::claim(&r, 1).unwrap();
    a.batch().unwrap().put_port("ns/a:80", &nodes(1, 80));
    let mut b = Writer::claim(&r, 1).unwrap();
    assert!(matches!(a.batch(), Err(StoreError::Superseded)));
    // The new writer sees what the old one wrote and carries on.
    assert_eq!(
        b.batch().unwrap().put_port("ns/a:80", &nodes(1, 80)),
        Put::Unchanged
    );
    assert_eq!(
        b.batch().unwrap().put_port("ns/a:80", &nodes(2, 80)),
        Put::Written
    );
}

#[test]
fn lock_of_dead_process_is_taken_over_and_half_done_slot_repaired() {
    let r = Region::create(1 << 20).unwrap();
    let mut a = Writer::claim(&r, 1).unwrap();
    a.batch().unwrap().put_port("ns/a:80", &nodes(3, 80));
    // SAFETY: fork in a test; the child exits immediately without touching shared state.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: terminate the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(child, &mut status, 0) };
    // Pretend the dead child died inside a batch, mid-way through updating a slot.
    let h = r.header();
    h.lock.store((1 << 40) | child as u64, Ordering::SeqCst);
    let slot = a.keys[b"ns/a:80".as_slice()].slot;
    r.slot(r.table_gen() as usize, slot)
        .seq
        .fetch_add(1, Ordering::SeqCst);
    let mut buf = [0u8; 256];
    assert_eq!(r.lookup(b"ns/a:80", &mut buf), Lookup::Busy);
    let mut b = Writer::claim(&r, 1).unwrap();
    assert_eq!(get(&r, "ns/a:80").unwrap().2, nodes(3, 80));
    assert_eq!(
        b.batch().unwrap().put_port("ns/a:80", &nodes(4, 80)),
        Put::Written
    );
}

/// A reader in another process never sees a torn record while the writer rewrites and reuses space.
#[test]
fn a_forked_reader_never_misses_a_live_key_while_the_table_is_rehashed() {
    const HOT: usize = 50;
    // 1024 slots: a rehash takes long enough for lookups to overlap it.
    let r = Region::create(256 * 1024).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    for k in 0..HOT {
        w.batch()
            .unwrap()
            .put_port(&format!("ns/hot{k}:80"), &nodes(1, 80));
    }
    let mut fds = [0i32; 2];
    // SAFETY: a pipe for the child to say it is reading, so the churn below overlaps its reads.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fork in a test. The child only reads the shared mapping and exits with _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut buf = vec![0u8; 1 << 12];
        let mut missed = 0u32;
        // SAFETY: writing one byte to our end of the pipe.
        unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
        // Generous: the parent's churn may take minutes on a loaded machine, and the child must read throughout.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let mut stopped = false;
        'read: while std::time::Instant::now() < deadline {
            for k in 0..HOT {
                match r.lookup(format!("ns/hot{k}:80").as_bytes(), &mut buf) {
                    Lookup::Found { count, len, .. } => {
                        if decode_nodes(&buf[..len], count).first().map(|n| n.port) == Some(9) {
                            stopped = true;
                            break 'read;
                        }
                    }
                    // Busy or missing: neither may happen because the table is being laid out afresh.
                    _ => missed += 1,
                }
            }
        }
        let code = match (missed, stopped) {
            (0, true) => 0,
            (0, false) => 3,
            _ => 2,
        };
        // SAFETY: leave the child without running the test harness's exit path.
        unsafe { libc::_exit(code) };
    }
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte from our end of the pipe; blocks until the child is reading.
    assert_eq!(
        unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) },
        1
    );
    // Random churn of 700 more keys at high load: rehashes move the hot keys around.
    let mut live: Vec<String> = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for i in 0..100_000 {
        let mut b = w.batch().unwrap();
        if live.len() >= 700 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            b.remove(&live.swap_remove((rng % live.len() as u64) as usize));
        }
        let key = format!("ns/churn{i}:80");
        assert_eq!(b.put_port(&key, &nodes(1, 80)), Put::Written);
        live.push(key);
    }
    let rehashes = r.table_gen();
    w.batch().unwrap().put_port("ns/hot0:80", &nodes(1, 9));
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert!(
        rehashes > 10,
        "the churn rehashed the table {rehashes} times"
    );
    assert!(libc::WIFEXITED(status), "child died (status {status})");
    match libc::WEXITSTATUS(status) {
        0 => {}
        2 => panic!("child saw a live key missing or busy"),
        3 => panic!("child stopped reading before the churn ended"),
        code => panic!("child exited with {code}"),
    }
}

#[test]
fn reader_in_forked_process_sees_only_whole_records() {
    const DONE: u16 = 60000;
    let r = Region::create(512 * 1024).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    // The first record, like every later one, has 1 + port % 13 nodes.
    w.batch().unwrap().put_port("ns/hot:80", &nodes(2, 1));
    let mut fds = [0i32; 2];
    // SAFETY: a pipe for the child to say it is reading, so the writes below overlap its reads.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fork in a test. The child only reads the shared mapping and exits with _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut buf = vec![0u8; 1 << 16];
        let (mut versions, mut last, mut torn, mut odd) = (0u32, 0u64, 0u32, 0u32);
        // SAFETY: writing one byte to our end of the pipe.
        unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match r.lookup(b"ns/hot:80", &mut buf) {
                Lookup::Found {
                    version,
                    count,
                    len,
                    ..
                } => {
                    let got = decode_nodes(&buf[..len], count);
                    // Every record written has 1 + port % 13 nodes, all on that port.
                    let port = got.first().map(|n| n.port).unwrap_or(0);
                    if count as u16 != 1 + port % 13 || got != nodes(count as usize, port) {
                        torn += 1;
                    }
                    if version != last {
                        versions += 1;
                        last = version;
                    }
                    if port == DONE {
                        break;
                    }
                }
                Lookup::Busy => {}
                _ => odd += 1,
            }
        }
        let code = if torn > 0 {
            2
        } else if odd > 0 {
            3
        } else if versions < 10 {
            4
        } else {
            0
        };
        // SAFETY: leave the child without running the test harness's exit path.
        unsafe { libc::_exit(code) };
    }
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte from our end of the pipe; blocks until the child is reading.
    assert_eq!(
        unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) },
        1
    );
    let start = std::time::Instant::now();
    let mut port = 2u16;
    while start.elapsed() < std::time::Duration::from_millis(700) || port < 20_000 {
        let mut b = w.batch().unwrap();
        b.put_port("ns/hot:80", &nodes(1 + (port % 13) as usize, port));
        // Churn other keys so freed blocks get reused while the child may still be copying them.
        b.put_port(
            &format!("ns/other{}:80", port % 17),
            &nodes(1 + (port % 5) as usize, port),
        );
        port = if port + 1 >= DONE { 2 } else { port + 1 };
    }
    w.batch()
        .unwrap()
        .put_port("ns/hot:80", &nodes(1 + (DONE % 13) as usize, DONE));
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let meaning = match code {
        0 => "ok",
        2 => "a torn record was interpreted",
        3 => "the key was reported missing",
        4 => "too few versions seen to prove anything",
        _ => "the child crashed or timed out",
    };
    assert_eq!(code, 0, "{meaning}");
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Key `i` of the re-layout tests and its content, both derived from `i` so that a reader can check any key.
fn relayout_key(i: usize) -> (String, Vec<Node>) {
    (
        format!("ns{}/svc{i}:http", i % 40),
        nodes(1 + i % 4, (i % 60_000) as u16 + 1),
    )
}

fn put_relayout_keys(w: &mut Writer, keys: usize) {
    let mut b = w.batch().unwrap();
    for i in 0..keys {
        let (key, nodes) = relayout_key(i);
        assert_eq!(b.put_port(&key, &nodes), Put::Written);
    }
}

/// How lookups of the re-layout keys `0..keys` went: (found with the right content, missing, busy, other).
fn check_relayout_keys(r: &Region, keys: usize) -> (usize, usize, usize, usize) {
    let mut buf = vec![0u8; 4096];
    let mut tally = (0, 0, 0, 0);
    for i in 0..keys {
        let (key, want) = relayout_key(i);
        match r.lookup(key.as_bytes(), &mut buf) {
            Lookup::Found { count, len, .. } if decode_nodes(&buf[..len], count) == want => {
                tally.0 += 1
            }
            Lookup::NotFound => tally.1 += 1,
            Lookup::Busy => tally.2 += 1,
            _ => tally.3 += 1,
        }
    }
    tally
}

/// Forks a child that runs `f` (given the write end of a pipe to tell the parent it is ready) and leaves with the
/// exit code `f` returns. Returns the child's pid and the read end of the pipe.
fn fork_child(f: impl FnOnce(i32) -> i32) -> (libc::pid_t, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: a pipe for the child to report readiness (and results) to the parent.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fork in a test. The child only touches the shared mapping and its own memory, and leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let code = f(fds[1]);
        // SAFETY: leave the child without running the test harness's exit path.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing the parent's copy of the write end, so a dead child shows as end of file.
    unsafe { libc::close(fds[1]) };
    (child, fds[0])
}

fn write_words(fd: i32, words: &[u64]) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    // SAFETY: writing our own buffer to our end of the pipe.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// Reads exactly `n` words from the pipe, or fewer if the writer died first.
fn read_words(fd: i32, n: usize) -> Vec<u64> {
    let mut bytes = vec![0u8; n * 8];
    let mut got = 0;
    while got < bytes.len() {
        // SAFETY: reading into the unfilled part of our own buffer.
        let rc = unsafe { libc::read(fd, bytes[got..].as_mut_ptr().cast(), bytes.len() - got) };
        if rc <= 0 {
            break;
        }
        got += rc as usize;
    }
    bytes[..got - got % 8]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn kill_and_reap(child: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, &mut status, 0);
    }
    status
}

/// A writer process killed at a random point of a re-layout (kill -9: nothing of it runs afterwards) leaves every
/// key readable, both before the next writer claims the region and after.
#[test]
fn a_writer_killed_at_any_point_of_a_relayout_loses_nothing() {
    const KEYS: usize = 20_000;
    const KILLS: u32 = 40;
    // 8 MiB: 32,768 slots, so the keys fill 61 % of the table.
    let r = Region::create(8 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    put_relayout_keys(&mut w, KEYS);
    // The kills land anywhere within two re-layouts' time after the child starts laying out.
    let t = std::time::Instant::now();
    w.relayout().unwrap();
    let span = t.elapsed() * 2;
    drop(w);
    let mut rng = 0x853c_49e6_748f_ea9bu64;
    let mut inside = 0;
    for kill in 0..KILLS {
        let (child, fd) = fork_child(|ready| {
            let mut w = loop {
                match Writer::claim(&r, 1) {
                    Ok(w) => break w,
                    Err(StoreError::Locked) => std::thread::yield_now(),
                    Err(_) => return 3,
                }
            };
            write_words(ready, &[1]);
            loop {
                if w.relayout().is_err() {
                    return 4;
                }
            }
        });
        assert_eq!(read_words(fd, 1), [1], "the child claimed the region");
        // SAFETY: closing our end of the pipe.
        unsafe { libc::close(fd) };
        let delay = span.mul_f64((xorshift(&mut rng) % 1000) as f64 / 1000.0);
        std::thread::sleep(delay);
        kill_and_reap(child);
        // Killed inside a re-layout when the dead child still holds the batch lock.
        if r.lock_holder_pid() == child as u32 {
            inside += 1;
        }
        let before = check_relayout_keys(&r, KEYS);
        let mut next = Writer::claim(&r, 1).unwrap();
        let after = check_relayout_keys(&r, KEYS);
        assert!(
            before == (KEYS, 0, 0, 0) && after == (KEYS, 0, 0, 0),
            "kill {kill}, {delay:?} into the re-layouts: (found, missing, busy, other) of {KEYS} keys: \
             {before:?} before the next writer claimed the region, {after:?} after"
        );
        assert_eq!(
            next.batch().unwrap().put_port("ns/after:80", &nodes(1, 80)),
            Put::Written,
            "the next writer carries on"
        );
        assert!(next.batch().unwrap().remove("ns/after:80"));
    }
    assert!(
        inside >= KILLS / 2,
        "only {inside} of {KILLS} kills landed inside a re-layout"
    );
}

/// A reader in another process, looking keys up afresh all along 100 re-layouts, finds every present key at
/// once: never missing, never busy.
#[test]
fn a_forked_reader_finds_every_present_key_at_once_during_100_relayouts() {
    const KEYS: usize = 10_000;
    const RELAYOUTS: u32 = 100;
    // 4 MiB: 16,384 slots, 61 % used.
    let r = Region::create(4 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    put_relayout_keys(&mut w, KEYS);
    let (child, fd) = fork_child(|out| {
        let mut buf = vec![0u8; 4096];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut tally = [0u64; 4];
        write_words(out, &[1]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if matches!(r.lookup(b"ctl/stop:80", &mut buf), Lookup::Found { .. }) {
                break;
            }
            for _ in 0..64 {
                let (key, want) = relayout_key((xorshift(&mut rng) % KEYS as u64) as usize);
                let at = match r.lookup(key.as_bytes(), &mut buf) {
                    Lookup::Found { count, len, .. }
                        if decode_nodes(&buf[..len], count) == want =>
                    {
                        0
                    }
                    Lookup::NotFound => 1,
                    Lookup::Busy => 2,
                    _ => 3,
                };
                tally[at] += 1;
            }
        }
        write_words(out, &tally);
        0
    });
    assert_eq!(read_words(fd, 1), [1], "the child is reading");
    for n in 0..RELAYOUTS {
        // Churn between re-layouts, so that each lays out a different table.
        let mut b = w.batch().unwrap();
        for j in 0..20 {
            b.put_port(&format!("ctl/churn{n}-{j}:80"), &nodes(1, 80));
        }
        for j in 0..20 {
            b.remove(&format!("ctl/churn{n}-{j}:80"));
        }
        drop(b);
        w.relayout().unwrap();
    }
    w.batch().unwrap().put_port("ctl/stop:80", &nodes(1, 80));
    let tally = read_words(fd, 4);
    // SAFETY: closing our end of the pipe.
    unsafe { libc::close(fd) };
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(tally.len(), 4, "the child reported (status {status})");
    let (found, missing, busy, other) = (tally[0], tally[1], tally[2], tally[3]);
    assert!(
        missing == 0 && busy == 0 && other == 0,
        "during {RELAYOUTS} re-layouts the reader found {found} keys, and got missing {missing}, busy {busy}, \
         wrong or corrupt {other}"
    );
    assert!(
        found >= 1000,
        "the reader overlapped the re-layouts: {found} lookups"
    );
}

/// A (hint, version) pair from before a re-layout is never taken for current once the key changed, in whichever
/// table the hint's slot now lies; a fresh lookup finds the key in its new place.
#[test]
fn a_cached_pair_follows_the_active_table_across_relayouts() {
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    put_relayout_keys(&mut w, 500);
    let before: Vec<(u64, u64)> = (0..500)
        .map(|i| {
            let (hint, version, _) = get(&r, &relayout_key(i).0).unwrap();
            (hint, version)
        })
        .collect();
    for round in 1..=3u16 {
        // Churn so that the keys land elsewhere in the next table.
        {
            let mut b = w.batch().unwrap();
            for j in 0..50 {
                b.put_port(&format!("ctl/churn{round}-{j}:80"), &nodes(1, 80));
            }
        }
        w.relayout().unwrap();
        for (i, &(hint, version)) in before.iter().enumerate() {
            let (key, want) = relayout_key(i);
            let (new_hint, new_version, got) = get(&r, &key).unwrap();
            assert_eq!(got, want, "{key} after re-layout {round}");
            assert_eq!(
                new_version, version,
                "a re-layout keeps each record's version"
            );
            assert!(r.is_current(new_hint, new_version));
            assert_eq!(r.is_current(hint, version), hint == new_hint);
        }
    }
    // A change after the switch: the old pair is stale wherever it points.
    let (key, _) = relayout_key(7);
    let (hint, version, _) = get(&r, &key).unwrap();
    w.batch().unwrap().put_port(&key, &nodes(9, 99));
    assert!(!r.is_current(hint, version));
    assert!(!r.is_current(before[7].0, before[7].1));
    assert_eq!(get(&r, &key).unwrap().2, nodes(9, 99));
}

/// A dump taken while the writer re-lays the table out again and again holds every key once, with its content.
#[test]
fn a_dump_during_relayouts_holds_every_key_once() {
    const KEYS: usize = 2000;
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    put_relayout_keys(&mut w, KEYS);
    let mut want: Vec<(String, Vec<Node>)> = (0..KEYS).map(relayout_key).collect();
    want.sort();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (relayouts, dumps) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                w.relayout().unwrap();
                n += 1;
            }
            n
        });
        let dumps: Vec<usize> = (0..30)
            .map(|_| {
                let mut seen: Vec<(String, Vec<Node>)> = r
                    .snapshot()
                    .into_iter()
                    .filter_map(|e| match e {
                        Entry::Port { key, nodes, .. } => Some((key, nodes)),
                        Entry::Service { .. } => None,
                    })
                    .collect();
                seen.sort();
                if seen == want { usize::MAX } else { seen.len() }
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), dumps)
    });
    assert!(
        dumps.iter().all(|&d| d == usize::MAX),
        "entries of the dumps that were not exactly the {KEYS} keys (the others are usize::MAX): {dumps:?}"
    );
    assert!(relayouts >= 30, "{relayouts} re-layouts during the dumps");
}

#[test]
fn nodes_without_topology_encode_exactly_as_the_plain_form() {
    // The bytes of the plain form, written out: [u16 port LE][u8 host_len][host] per node.
    let plain = [Node::new("10.0.0.1", 80), Node::new("fd00::1", 8443)];
    let mut want = vec![80, 0, 8];
    want.extend_from_slice(b"10.0.0.1");
    want.extend_from_slice(&[0xfb, 0x20, 7]);
    want.extend_from_slice(b"fd00::1");
    assert_eq!(encode_nodes(&plain), want);
    // The whole record too: header, key padded to 8 bytes, body.
    let rec = encode_record(b"ns/a:http", KIND_PORT, 2, &want);
    let mut header = vec![9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
    header.extend_from_slice(b"ns/a:http\0\0\0\0\0\0\0");
    header.extend_from_slice(&want);
    assert_eq!(rec, header);
    assert_eq!(decode_nodes(&want, 2), plain);
    assert!(body_is_valid(KIND_PORT, &want, 2));
}

#[test]
fn nodes_with_topology_round_trip_and_are_validated() {
    use crate::model::NodeTopology;
    let with = |host: &str, zone: Option<&str>, priority: i8| Node {
        topology: Some(NodeTopology {
            zone: zone.map(str::to_owned),
            priority,
        }),
        ..Node::new(host, 80)
    };
    let nodes = vec![
        with("10.0.0.1", Some("eu-west-1a"), 0),
        with("10.0.0.2", Some("eu-west-1b"), -1),
        with("10.0.0.3", None, -1),
    ];
    let body = encode_nodes(&nodes);
    // The first node: its host length carries the flag, then priority and zone follow the host.
    assert_eq!(body[..3], [80, 0, 0x80 | 8]);
    assert_eq!(body[11..13], [0, 10]);
    assert_eq!(&body[13..23], b"eu-west-1a");
    assert_eq!(decode_nodes(&body, 3), nodes);
    assert!(body_is_valid(KIND_PORT, &body, 3));
    // A count or a length that disagrees with the body is refused, and decoding stops without reading past it.
    assert!(!body_is_valid(KIND_PORT, &body, 2));
    assert!(!body_is_valid(KIND_PORT, &body, 4));
    assert!(!body_is_valid(KIND_PORT, &body[..body.len() - 1], 3));
    assert_eq!(decode_nodes(&body[..body.len() - 1], 3).len(), 2);
    // Through a region: stored, found, and unchanged when written again.
    let r = Region::create(1 << 20).unwrap();
    let mut w = Writer::claim(&r, 1).unwrap();
    {
        let mut b = w.batch().unwrap();
        assert_eq!(b.put_port("ns/a:http", &nodes), Put::Written);
        assert_eq!(b.put_port("ns/a:http", &nodes), Put::Unchanged);
        // A changed priority is a change.
        let mut moved = nodes.clone();
        moved[1].topology.as_mut().unwrap().priority = 0;
        assert_eq!(b.put_port("ns/a:http", &moved), Put::Written);
        assert_eq!(b.put_port("ns/a:http", &nodes), Put::Written);
    }
    assert_eq!(get(&r, "ns/a:http").unwrap().2, nodes);
}
