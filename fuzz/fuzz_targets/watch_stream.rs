//! Watch-stream framing and event decoding: arbitrary bytes, arriving in arbitrary chunks, as a watch body.
//! Input: `[flags][n][n chunk sizes][stream...]`; flags bit 0 selects EndpointSlices.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    k8s_disc::fuzzing::watch_stream(flags & 1 == 1, sizes, stream);
});
