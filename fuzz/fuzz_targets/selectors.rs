//! Selectors: a label selector, a namespace pattern and a namespace, separated by NUL bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let label = parts.next().unwrap_or("");
    let pattern = parts.next().unwrap_or("");
    let ns = parts.next().unwrap_or("");
    k8s_disc::fuzzing::selectors(label, pattern, ns);
});
