//! Object decoding: arbitrary bytes as Endpoints, EndpointSlices and list pages, converted to nodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    k8s_disc::fuzzing::objects(data);
});
