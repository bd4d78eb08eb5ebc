//! Config parsing: arbitrary text as the discovery config (`k8s_disc::config::parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    k8s_disc::fuzzing::config(&String::from_utf8_lossy(data));
});
