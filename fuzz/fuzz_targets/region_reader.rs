//! The shared-memory record reader: a populated region with arbitrary words overwritten, read every way.
//! Input: `[n][n x (word index u16 LE, value u64 LE)][probe key...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let len = (usize::from(n) * 10).min(rest.len() / 10 * 10);
    let (patches, probe) = rest.split_at(len);
    k8s_disc::fuzzing::region_reader(patches, &String::from_utf8_lossy(probe));
});
