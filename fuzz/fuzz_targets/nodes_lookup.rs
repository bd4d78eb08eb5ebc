//! Service names: arbitrary names (and stale hints) looked up in a two-cluster instance.
//! Input: `[buf_len u16 LE][hint u64 LE][version u64 LE][name...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 18 {
        return;
    }
    let buf_len = usize::from(u16::from_le_bytes([data[0], data[1]]) % 1024);
    let hint = u64::from_le_bytes(data[2..10].try_into().unwrap());
    let version = u64::from_le_bytes(data[10..18].try_into().unwrap());
    let name = String::from_utf8_lossy(&data[18..]);
    k8s_disc::fuzzing::nodes_lookup(&name, buf_len, hint, version);
});
