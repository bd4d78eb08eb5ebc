//! Store micro-benchmarks: prints ns per operation for the lookups behind `nodes()` and for writes, and writes
//! the same numbers as JSON to `target/bench-store.json`. Run: `cargo bench --bench store`.

use std::hint::black_box;
use std::time::Instant;

use k8s_disc::testing::Node;
use k8s_disc::testing::{Lookup, Region, Writer};

fn nodes(n: usize, seed: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node::new(format!("10.{}.{}.{}", seed % 250, i / 250, i % 250), 8080))
        .collect()
}

/// Runs `f` `iters` times and returns ns per call (best of 5 runs, to ride out a noisy neighbour).
fn measure(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..iters {
            f(i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn main() {
    let services = 10_000;
    let region = Region::create(64 << 20).expect("region");
    let mut w = Writer::claim(&region, 1).expect("claim");
    let keys: Vec<String> = (0..services)
        .map(|i| format!("ns{}/svc{i}:http", i % 50))
        .collect();
    {
        let mut b = w.batch().expect("batch");
        for (i, k) in keys.iter().enumerate() {
            b.put_port(k, &nodes(10, i));
        }
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut known = Vec::with_capacity(services);
    for k in &keys {
        match region.lookup(k.as_bytes(), &mut buf) {
            Lookup::Found { hint, version, .. } => known.push((hint, version)),
            other => panic!("{k}: {other:?}"),
        }
    }

    let unchanged_one = measure(10_000_000, |_| {
        black_box(region.is_current(black_box(known[0].0), black_box(known[0].1)));
    });
    let unchanged_spread = measure(2_000_000, |i| {
        let (s, v) = known[(i as usize * 7919) % services];
        black_box(region.is_current(s, v));
    });
    let full_lookup = measure(1_000_000, |i| {
        let k = &keys[(i as usize * 7919) % services];
        black_box(region.lookup(k.as_bytes(), &mut buf));
    });
    let miss = measure(1_000_000, |i| {
        black_box(region.lookup(format!("nope/x{}:http", i % 100).as_bytes(), &mut buf));
    });
    let mut round = 0usize;
    let write = measure(20_000, |i| {
        round += 1;
        let k = &keys[(i as usize * 7919) % services];
        black_box(w.batch().expect("batch").put_port(k, &nodes(10, round)));
    });
    // A re-layout of the whole slot table (what the writer does when tombstones fill it), and what fresh lookups
    // of present keys get from another thread meanwhile.
    let relayout = measure(10, |_| {
        w.relayout().expect("relayout");
    });
    const RELAYOUTS: u32 = 50;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (during_found, during_total, during_ns) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut buf = vec![0u8; 1 << 16];
            let (mut found, mut total, mut i) = (0u64, 0u64, 0usize);
            let t = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i = i.wrapping_add(7919);
                let k = &keys[i % services];
                if matches!(region.lookup(k.as_bytes(), &mut buf), Lookup::Found { .. }) {
                    found += 1;
                }
                total += 1;
            }
            (
                found,
                total,
                t.elapsed().as_nanos() as f64 / total.max(1) as f64,
            )
        });
        for _ in 0..RELAYOUTS {
            w.relayout().expect("relayout");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().expect("reader")
    });
    let churn = churn_at_the_live_key_limit();
    let st = region.status();
    let per_endpoint = st.heap_used as f64 / (services * 10) as f64;
    // Two tables of one 32-byte slot per 256 bytes of region.
    let slot_bytes_per_endpoint =
        (64.0 * 1024.0 * 1024.0 / 256.0 * 32.0 * 2.0) / (services * 10) as f64;

    println!("store benchmark: {services} services x 10 nodes, region 64 MiB (best of 5 runs)");
    println!("  unchanged check, same key          {unchanged_one:8.1} ns/op");
    println!("  unchanged check, keys spread       {unchanged_spread:8.1} ns/op");
    println!("  full lookup + copy (10 nodes)      {full_lookup:8.1} ns/op");
    println!("  miss (unknown key)                 {miss:8.1} ns/op");
    println!("  write of one 10-node entry         {write:8.1} ns/op");
    println!(
        "  re-layout of the slot table        {:8.3} ms ({services} keys)",
        relayout / 1e6
    );
    println!(
        "  lookups during {RELAYOUTS} re-layouts      {during_found} of {during_total} found ({during_ns:.1} ns/op, another thread)"
    );
    println!("  heap bytes per endpoint            {per_endpoint:8.1}");
    println!(
        "  slot-table bytes per endpoint      {slot_bytes_per_endpoint:8.1} (two fixed tables sized by shared_size)"
    );
    println!(
        "churn at the live-key limit: {} of {} slots live, each step a batch that deletes one key and inserts another",
        churn.live, churn.slots
    );
    println!(
        "  delete + insert                    {:8.1} ns/op ({} re-layouts in {} steps)",
        churn.pair_ns, churn.relayouts, churn.pairs
    );
    println!(
        "  full lookup + copy (1 node)        {:8.1} ns/op (after the churn)",
        churn.lookup_ns
    );
    println!(
        "  miss (unknown key)                 {:8.1} ns/op (after the churn)",
        churn.miss_ns
    );
    let json = format!(
        "{{\"services\":{services},\"nodes_per_service\":10,\"unchanged_same_key_ns\":{unchanged_one:.1},\
         \"unchanged_spread_ns\":{unchanged_spread:.1},\"full_lookup_ns\":{full_lookup:.1},\"miss_ns\":{miss:.1},\
         \"write_ns\":{write:.1},\"relayout_ms\":{:.3},\"lookups_during_relayouts\":{during_total},\
         \"found_during_relayouts\":{during_found},\"heap_bytes_per_endpoint\":{per_endpoint:.1},\
         \"churn_pair_ns\":{:.1},\"churn_relayouts\":{},\"churn_pairs\":{},\"churn_lookup_ns\":{:.1},\
         \"churn_miss_ns\":{:.1}}}\n",
        relayout / 1e6,
        churn.pair_ns,
        churn.relayouts,
        churn.pairs,
        churn.lookup_ns,
        churn.miss_ns
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-store.json");
    if let Err(e) = std::fs::write(&out, json) {
        eprintln!("cannot write {}: {e}", out.display());
    }
}

/// What deletes and inserts cost while the live keys fill the slot table up to its limit (7/8 of the slots).
struct Churn {
    slots: usize,
    live: usize,
    pairs: u64,
    pair_ns: f64,
    relayouts: u64,
    lookup_ns: f64,
    miss_ns: f64,
}

fn churn_at_the_live_key_limit() -> Churn {
    // 4 MiB: 16384 slots per table.
    let region = Region::create(4 << 20).expect("region");
    let slots = 16_384;
    let live = slots * 7 / 8;
    let key = |i: usize| format!("ns{}/churn{i}:http", i % 50);
    let mut w = Writer::claim(&region, 1).expect("claim");
    {
        let mut b = w.batch().expect("batch");
        for i in 0..live {
            b.put_port(&key(i), &nodes(1, i));
        }
    }
    assert_eq!(region.status().entries, live as u64, "every key fits");
    const ITERS: u64 = 1000;
    // Key `oldest` leaves and key `oldest + live` comes, so the live keys stay at the limit.
    let mut oldest = 0usize;
    let before = region.relayouts();
    let pair_ns = measure(ITERS, |_| {
        let mut b = w.batch().expect("batch");
        b.remove(&key(oldest));
        black_box(b.put_port(&key(oldest + live), &nodes(1, oldest)));
        oldest += 1;
    });
    let relayouts = region.relayouts() - before;
    let pairs = oldest as u64;
    assert_eq!(region.status().full_rejections, 0, "every insert fits");
    let mut buf = vec![0u8; 1 << 16];
    let lookup_ns = measure(1_000_000, |i| {
        let k = key(oldest + (i as usize * 7919) % live);
        black_box(region.lookup(k.as_bytes(), &mut buf));
    });
    let miss_ns = measure(1_000_000, |i| {
        black_box(region.lookup(format!("nope/x{}:http", i % 1000).as_bytes(), &mut buf));
    });
    Churn {
        slots,
        live,
        pairs,
        pair_ns,
        relayouts,
        lookup_ns,
        miss_ns,
    }
}
