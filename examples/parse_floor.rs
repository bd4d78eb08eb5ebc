//! The floor for the initial-sync benchmark: how long serde_json alone takes to parse a LIST response into a
//! `serde_json::Value`, best of five. Prints `{"bytes":N,"value_ns":N}`.
//!
//! Usage: `parse_floor LIST.json` (run by benches/gateway.py).

use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: parse_floor LIST.json");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("parse_floor: cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let mut best = u128::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("parse_floor: {path} is not JSON: {e}");
                std::process::exit(1);
            }
        };
        best = best.min(t0.elapsed().as_nanos());
        drop(std::hint::black_box(value));
    }
    println!("{{\"bytes\":{},\"value_ns\":{best}}}", bytes.len());
}
