//! `init` run again in the same process, as the nginx master does on every reload.

use std::sync::Arc;

use k8s_disc::testing::{InitScope, Instance};

fn conf(weight: u32, size: &str) -> String {
    format!(
        r#"{{"service":{{"schema":"http","host":"127.0.0.1","port":"6443"}},"client":{{"token":"t"}},
            "default_weight":{weight},"shared_size":"{size}"}}"#
    )
}

/// One test, because the instance registry is process-wide state.
#[test]
fn reload_keeps_regions_unless_their_size_changes() {
    let a = Instance::init(&conf(50, "1m"), &InitScope::http()).unwrap();
    let same = Instance::init(&conf(50, "1m"), &InitScope::http()).unwrap();
    assert!(
        Arc::ptr_eq(&a, &same),
        "unchanged config: the same instance"
    );

    let b = Instance::init(&conf(7, "1m"), &InitScope::http()).unwrap();
    assert!(
        !Arc::ptr_eq(&a, &b),
        "changed config: a new instance with the new settings"
    );
    assert_eq!(b.clusters[0].config.default_weight, 7);
    assert!(
        Arc::ptr_eq(&a.clusters[0].region, &b.clusters[0].region),
        "same cluster and size: region kept"
    );

    let c = Instance::init(&conf(7, "2m"), &InitScope::http()).unwrap();
    assert!(
        !Arc::ptr_eq(&b.clusters[0].region, &c.clusters[0].region),
        "new size: new region"
    );
    assert_eq!(c.clusters[0].region.size(), 2 << 20);

    // Values taken from the environment are part of a config's identity.
    // SAFETY: this binary's only test runs on this thread; nothing reads the environment concurrently.
    unsafe { std::env::set_var("K8S_DISC_RELOAD_TEST_TOKEN", "one") };
    let json = r#"{"service":{"schema":"http","host":"127.0.0.1","port":"6443"},
                   "client":{"token":"${K8S_DISC_RELOAD_TEST_TOKEN}"},"shared_size":"1m"}"#;
    let a = Instance::init(json, &InitScope::http()).unwrap();
    // SAFETY: as above.
    unsafe { std::env::set_var("K8S_DISC_RELOAD_TEST_TOKEN", "two") };
    let b = Instance::init(json, &InitScope::http()).unwrap();
    assert!(
        !Arc::ptr_eq(&a, &b),
        "a token that changed in the environment takes effect on reload"
    );
    assert_eq!(
        b.clusters[0].config.token.as_ref().map(|t| t.expose()),
        Some("two")
    );
}
