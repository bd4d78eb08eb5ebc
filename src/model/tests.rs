//! Tests of the object model: Endpoints and EndpointSlices to nodes, watch events and Status decoding.

use super::*;
use serde_json::json;

fn n(host: &str, port: u16) -> Node {
    Node::new(host, port)
}

fn ep(v: serde_json::Value) -> Endpoints {
    Endpoints::parse(&v.to_string()).expect("valid Endpoints")
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    EndpointSlice::parse(&v.to_string(), true).expect("valid EndpointSlice")
}

fn pn(entries: &[(&str, Vec<Node>)]) -> PortNodes {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

// ---- Endpoints ----

#[test]
fn endpoints_without_subsets_is_empty() {
    let e = ep(json!({"metadata": {"name": "empty-svc", "namespace": "shop"}}));
    assert_eq!(e.subsets, Subsets::default());
    assert_eq!(endpoints_ports(&e), PortNodes::new());
    let e = ep(json!({"metadata": {"name": "x"}, "subsets": null}));
    assert_eq!(endpoints_ports(&e), PortNodes::new());
    let e = ep(json!({"metadata": {"name": "x"}, "subsets": []}));
    assert_eq!(endpoints_ports(&e), PortNodes::new());
}

#[test]
fn endpoints_not_ready_only_keeps_port_known_and_empty() {
    let e = ep(json!({"subsets": [{
        "notReadyAddresses": [{"ip": "10.0.0.9"}],
        "ports": [{"name": "http", "port": 80}]
    }]}));
    assert_eq!(endpoints_ports(&e), pn(&[("http", vec![])]));
}

#[test]
fn endpoints_ready_and_not_ready_in_one_subset() {
    let e = ep(json!({"subsets": [{
        "addresses": [{"ip": "10.0.0.1"}],
        "notReadyAddresses": [{"ip": "10.0.0.9"}],
        "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090}]
    }]}));
    assert_eq!(
        endpoints_ports(&e),
        pn(&[
            ("grpc", vec![n("10.0.0.1", 9090)]),
            ("http", vec![n("10.0.0.1", 80)]),
        ])
    );
}

#[test]
fn endpoints_subsets_merge_by_port_name() {
    // Same name, different numbers in two subsets (named targetPort).
    let e = ep(json!({"subsets": [
        {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}],
         "ports": [{"name": "p1", "port": 5001}]},
        {"addresses": [{"ip": "20.0.0.1"}],
         "ports": [{"name": "p1", "port": 5002}, {"name": "p2", "port": 6000}]}
    ]}));
    assert_eq!(
        endpoints_ports(&e),
        pn(&[
            (
                "p1",
                vec![
                    n("10.0.0.1", 5001),
                    n("10.0.0.2", 5001),
                    n("20.0.0.1", 5002)
                ]
            ),
            ("p2", vec![n("20.0.0.1", 6000)]),
        ])
    );
}

#[test]
fn endpoints_unnamed_port_is_keyed_by_number() {
    let e = ep(json!({"subsets": [{
        "addresses": [{"ip": "10.0.0.1"}],
        "ports": [{"port": 5001, "protocol": "TCP"}]
    }, {
        "addresses": [{"ip": "10.0.0.3"}],
        "ports": [{"name": "", "port": 5001}]
    }]}));
    assert_eq!(
        endpoints_ports(&e),
        pn(&[("5001", vec![n("10.0.0.1", 5001), n("10.0.0.3", 5001)])])
    );
}

#[test]
fn endpoints_sort_as_strings_and_dedupe() {
    let e = ep(json!({"subsets": [
        {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.10"}, {"ip": "10.0.0.2"}],
         "ports": [{"name": "http", "port": 80}]},
        {"addresses": [{"ip": "10.0.0.10"}, {"ip": "9.0.0.1"}],
         "ports": [{"name": "http", "port": 80}]}
    ]}));
    assert_eq!(
        endpoints_ports(&e),
        pn(&[(
            "http",
            vec![n("10.0.0.10", 80), n("10.0.0.2", 80), n("9.0.0.1", 80)]
        )])
    );
}

#[test]
fn endpoints_invalid_ports_and_addresses_are_skipped() {
    let e = ep(json!({"subsets": [{
        "addresses": [{"ip": "10.0.0.1"}, {}, {"ip": ""}, {"ip": "web.example.com"},
                      {"ip": "fd00::1"}],
        "ports": [{"name": "zero", "port": 0}, {"name": "big", "port": 65536},
                  {"name": "neg", "port": -1}, {"name": "none"}, {"name": "ok", "port": 65535}]
    }]}));
    assert_eq!(
        endpoints_ports(&e),
        pn(&[("ok", vec![n("10.0.0.1", 65535), n("fd00::1", 65535)])])
    );
}

#[test]
fn endpoints_subset_without_ports_contributes_nothing() {
    let e = ep(json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": null}]}));
    assert_eq!(endpoints_ports(&e), PortNodes::new());
}

#[test]
fn endpoints_list_body_from_reference() {
    // kube-api.md §1.6, trimmed of nothing but the uid ellipses.
    let body = r#"{
      "kind": "EndpointsList", "apiVersion": "v1",
      "metadata": {"resourceVersion": "184467"},
      "items": [
        {"metadata": {"name": "web", "namespace": "shop", "uid": "5b1c9a4e",
            "resourceVersion": "184401", "creationTimestamp": "2026-07-01T10:00:00Z",
            "labels": {"app": "web"},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-07-20T08:15:30.123456789Z"}},
         "subsets": [{
           "addresses": [
             {"ip": "10.244.1.5", "nodeName": "node-a",
              "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-abcde", "uid": "0d7c"}},
             {"ip": "10.244.2.8", "hostname": "web-0", "nodeName": "node-b",
              "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "9a1e"}}],
           "notReadyAddresses": [
             {"ip": "10.244.3.12", "nodeName": "node-c",
              "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-fghij", "uid": "77aa"}}],
           "ports": [
             {"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"},
             {"name": "grpc", "port": 9090, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}]},
        {"metadata": {"name": "empty-svc", "namespace": "shop", "uid": "x",
            "resourceVersion": "170001", "creationTimestamp": "2026-07-02T10:00:00Z"}}
      ]
    }"#;
    let list: List<&serde_json::value::RawValue> = serde_json::from_str(body).expect("list parses");
    assert_eq!(list.kind.as_deref(), Some("EndpointsList"));
    assert_eq!(list.metadata.resource_version.as_deref(), Some("184467"));
    assert_eq!(list.metadata.next_page(), None);
    let items: Vec<Endpoints> = list
        .items
        .expect("items")
        .iter()
        .map(|i| Endpoints::parse(i.get()).expect("parses"))
        .collect();
    assert_eq!(items.len(), 2);
    let web = &items[0];
    assert_eq!(web.metadata.name.as_deref(), Some("web"));
    assert_eq!(web.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(web.metadata.resource_version.as_deref(), Some("184401"));
    assert_eq!(
        web.metadata.service, None,
        "Endpoints carry no service-name label"
    );
    assert_eq!(
        endpoints_ports(web),
        pn(&[
            ("grpc", vec![n("10.244.1.5", 9090), n("10.244.2.8", 9090)]),
            ("http", vec![n("10.244.1.5", 8080), n("10.244.2.8", 8080)]),
        ])
    );
    assert_eq!(endpoints_ports(&items[1]), PortNodes::new());

    // The same body item by item.
    let raw: List<serde_json::Value> = serde_json::from_str(body).expect("raw list");
    assert_eq!(raw.items.map(|i| i.len()), Some(2));
}

// ---- EndpointSlices ----

fn s(name: &str, endpoints: serde_json::Value, ports: serde_json::Value) -> EndpointSlice {
    slice(json!({
        "metadata": {"name": name, "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": "svc"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
}

fn e(ip: &str, cond: serde_json::Value) -> serde_json::Value {
    json!({"addresses": [ip], "conditions": cond})
}

#[test]
fn slice_null_missing_and_empty_endpoints_keep_ports_known() {
    let http = json!([{"name": "http", "port": 80}]);
    for endpoints in [json!(null), json!([])] {
        let sl = s("a", endpoints, http.clone());
        assert_eq!(slices_ports([&sl]), pn(&[("http", vec![])]));
    }
    let missing = slice(json!({"metadata": {"name": "a"}, "addressType": "IPv4",
                               "ports": [{"name": "http", "port": 80}]}));
    assert_eq!(missing.slice.endpoints.iter().count(), 0);
    assert_eq!(slices_ports([&missing]), pn(&[("http", vec![])]));
}

#[test]
fn slice_null_or_missing_ports_contribute_nothing() {
    let eps = json!([e("10.0.0.1", json!({"ready": true}))]);
    for ports in [json!(null), json!([])] {
        let sl = s("a", eps.clone(), ports);
        assert_eq!(slices_ports([&sl]), PortNodes::new());
    }
    let missing = slice(json!({"addressType": "IPv4", "endpoints": eps}));
    assert_eq!(slices_ports([&missing]), PortNodes::new());
    assert_eq!(slices_ports(std::iter::empty::<&Slice>()), PortNodes::new());
}

#[test]
fn slice_conditions_defaults() {
    let sl = s(
        "a",
        json!([
            {"addresses": ["10.0.0.1"]},                       // no conditions
            e("10.0.0.2", json!({})),                          // ready nil
            e("10.0.0.3", json!({"ready": null})),             // ready null
            e("10.0.0.4", json!({"ready": false, "serving": true})),
            e("10.0.0.5", json!({"ready": true})),
            e("10.0.0.6", json!({"ready": false, "terminating": true})),
        ]),
        json!([{"name": "http", "port": 80}]),
    );
    assert_eq!(
        slices_ports([&sl]),
        pn(&[(
            "http",
            vec![
                n("10.0.0.1", 80),
                n("10.0.0.2", 80),
                n("10.0.0.3", 80),
                n("10.0.0.5", 80)
            ]
        )])
    );
    let only_not_ready = s(
        "b",
        json!([e("10.0.0.4", json!({"ready": false}))]),
        json!([{"name": "http", "port": 80}]),
    );
    assert_eq!(slices_ports([&only_not_ready]), pn(&[("http", vec![])]));
}

#[test]
fn a_port_without_ready_endpoints_serves_the_terminating_ones_still_serving() {
    let ports = json!([{"name": "http", "port": 80}]);
    let draining = |ready_one: bool| {
        s(
            "a",
            json!([
                e(
                    "10.0.0.1",
                    json!({"ready": false, "serving": true, "terminating": true})
                ),
                e("10.0.0.2", json!({"ready": false, "terminating": true})), // serving nil: true
                e(
                    "10.0.0.3",
                    json!({"ready": false, "serving": false, "terminating": true})
                ),
                e(
                    "10.0.0.4",
                    json!({"ready": false, "serving": true, "terminating": false})
                ),
                e("10.0.0.5", json!({"ready": ready_one})),
            ]),
            ports.clone(),
        )
    };
    // Every pod is shutting down: drain through those still serving.
    assert_eq!(
        slices_ports([&draining(false)]),
        pn(&[("http", vec![n("10.0.0.1", 80), n("10.0.0.2", 80)])])
    );
    // One ready endpoint is enough: the terminating ones are not served.
    assert_eq!(
        slices_ports([&draining(true)]),
        pn(&[("http", vec![n("10.0.0.5", 80)])])
    );
}

#[test]
fn slice_endpoint_without_address_is_skipped() {
    let sl = s(
        "a",
        json!([{"addresses": []}, {"addresses": null}, {},
               {"addresses": ["10.0.0.1", "10.0.0.99"]}]),
        json!([{"name": "http", "port": 80}]),
    );
    assert_eq!(
        slices_ports([&sl]),
        pn(&[("http", vec![n("10.0.0.1", 80)])])
    );
}

#[test]
fn slice_terminating_copy_loses_in_both_orders() {
    let ports = json!([{"name": "http", "port": 80}]);
    // A terminating (but, oddly, still ready) copy and a new not-ready copy:
    // the non-terminating copy is preferred, so the node is not served.
    let dying = json!([e("10.0.0.1", json!({"ready": true, "terminating": true}))]);
    let fresh = json!([e("10.0.0.1", json!({"ready": false, "terminating": false}))]);
    for (first, second) in [(&dying, &fresh), (&fresh, &dying)] {
        let a = s("a", first.clone(), ports.clone());
        let b = s("b", second.clone(), ports.clone());
        assert_eq!(slices_ports([&a, &b]), pn(&[("http", vec![])]));
        assert_eq!(slices_ports([&b, &a]), pn(&[("http", vec![])]));
    }
    // And the common case: terminating not-ready vs fresh ready ⇒ served.
    let dying = json!([e("10.0.0.1", json!({"ready": false, "terminating": true}))]);
    let fresh = json!([e("10.0.0.1", json!({"ready": true}))]);
    for (first, second) in [(&dying, &fresh), (&fresh, &dying)] {
        let a = s("a", first.clone(), ports.clone());
        let b = s("b", second.clone(), ports.clone());
        let want = pn(&[("http", vec![n("10.0.0.1", 80)])]);
        assert_eq!(slices_ports([&a, &b]), want);
        assert_eq!(slices_ports([&b, &a]), want);
    }
}

#[test]
fn slice_duplicate_tie_prefers_ready() {
    let ports = json!([{"name": "http", "port": 80}]);
    let not_ready = s(
        "a",
        json!([e("10.0.0.1", json!({"ready": false}))]),
        ports.clone(),
    );
    let ready = s("b", json!([e("10.0.0.1", json!({"ready": true}))]), ports);
    let want = pn(&[("http", vec![n("10.0.0.1", 80)])]);
    assert_eq!(slices_ports([&not_ready, &ready]), want);
    assert_eq!(slices_ports([&ready, &not_ready]), want);
}

#[test]
fn slice_both_terminating_ready_copy_wins() {
    let ports = json!([{"name": "http", "port": 80}]);
    let a = s(
        "a",
        json!([e("10.0.0.1", json!({"ready": false, "terminating": true}))]),
        ports.clone(),
    );
    let b = s(
        "b",
        json!([e("10.0.0.1", json!({"ready": true, "terminating": true}))]),
        ports,
    );
    assert_eq!(
        slices_ports([&b, &a]),
        pn(&[("http", vec![n("10.0.0.1", 80)])])
    );
}

#[test]
fn slice_duplicates_dedupe_across_slices() {
    let ports = json!([{"name": "http", "port": 80}]);
    let a = s(
        "web-a",
        json!([
            e("10.0.0.1", json!({"ready": true})),
            e("10.0.0.2", json!({"ready": true}))
        ]),
        ports.clone(),
    );
    let b = s(
        "web-b",
        json!([
            e("10.0.0.2", json!({"ready": true})),
            e("10.0.0.3", json!({"ready": true}))
        ]),
        ports,
    );
    assert_eq!(
        slices_ports([&b, &a]),
        pn(&[(
            "http",
            vec![n("10.0.0.1", 80), n("10.0.0.2", 80), n("10.0.0.3", 80)]
        )])
    );
}

#[test]
fn slice_ipv6_served_and_fqdn_ignored() {
    let v6 = slice(json!({
        "metadata": {"name": "web-v6"}, "addressType": "IPv6",
        "endpoints": [{"addresses": ["fd00:10:244::5"], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080}]
    }));
    let fqdn = slice(json!({
        "metadata": {"name": "web-fqdn"}, "addressType": "FQDN",
        "endpoints": [{"addresses": ["web.example.com"], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080}, {"name": "only-fqdn", "port": 1}]
    }));
    let v4 = s(
        "web-v4",
        json!([e("10.0.0.1", json!({"ready": true}))]),
        json!([{"name": "http", "port": 8080}]),
    );
    let unknown = slice(json!({
        "metadata": {"name": "web-x"}, "addressType": "",
        "endpoints": [{"addresses": ["10.9.9.9"]}],
        "ports": [{"name": "http", "port": 8080}]
    }));
    assert_eq!(
        slices_ports([&fqdn, &v6, &v4, &unknown]),
        pn(&[("http", vec![n("10.0.0.1", 8080), n("fd00:10:244::5", 8080)])])
    );
    assert_eq!(slices_ports([&fqdn]), PortNodes::new());
}

#[test]
fn slice_port_null_is_skipped() {
    let sl = s(
        "a",
        json!([e("10.0.0.1", json!({"ready": true}))]),
        json!([{"name": "all", "port": null}, {"name": "", "port": 9090},
               {"name": "zero", "port": 0}]),
    );
    assert_eq!(
        slices_ports([&sl]),
        pn(&[("9090", vec![n("10.0.0.1", 9090)])])
    );
    let unnamed = s(
        "b",
        json!([e("10.0.0.1", json!({"ready": true}))]),
        json!([{"port": 9090}]),
    );
    assert_eq!(
        slices_ports([&unnamed]),
        pn(&[("9090", vec![n("10.0.0.1", 9090)])])
    );
}

#[test]
fn slice_multi_slice_aggregation() {
    // kubernetes4.t: 3 endpoints in slice1, 2 more in slice2 ⇒ 5.
    let ports = json!([{"name": "p1", "port": 5001}]);
    let s1 = s(
        "service-a-epslice1",
        json!([
            e("10.0.0.1", json!({"ready": true})),
            e("10.0.0.2", json!({"ready": true})),
            e("10.0.0.3", json!({"ready": true}))
        ]),
        ports.clone(),
    );
    let s2 = s(
        "service-a-epslice2",
        json!([
            e("10.0.0.4", json!({"ready": true})),
            e("10.0.0.5", json!({"ready": true}))
        ]),
        ports,
    );
    let all = slices_ports([&s2, &s1]);
    assert_eq!(all.get("p1").map(Vec::len), Some(5));
    assert_eq!(
        all.get("p1").and_then(|v| v.first()),
        Some(&n("10.0.0.1", 5001))
    );
    assert_eq!(slices_ports([&s1]).get("p1").map(Vec::len), Some(3));
}

#[test]
fn slice_ports_differ_per_slice() {
    // One port name resolving to different numbers in different slices:
    // each slice's endpoints get that slice's numbers only.
    let a = s(
        "a",
        json!([e("10.0.0.1", json!({"ready": true}))]),
        json!([{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]),
    );
    let b = s(
        "b",
        json!([e("10.0.0.2", json!({"ready": true}))]),
        json!([{"name": "http", "port": 8081}]),
    );
    assert_eq!(
        slices_ports([&a, &b]),
        pn(&[
            ("http", vec![n("10.0.0.1", 8080), n("10.0.0.2", 8081)]),
            ("metrics", vec![n("10.0.0.1", 9100)]),
        ])
    );
    // The same IP on both numbers is two distinct nodes.
    let c = s(
        "c",
        json!([e("10.0.0.1", json!({"ready": true}))]),
        json!([{"name": "http", "port": 8081}]),
    );
    assert_eq!(
        slices_ports([&a, &c]).get("http"),
        Some(&vec![n("10.0.0.1", 8080), n("10.0.0.1", 8081)])
    );
}

#[test]
fn slice_list_body_from_reference() {
    // kube-api.md §1.7.
    let body = r#"{
      "kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
      "metadata": {"resourceVersion": "184467", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTg0NDY3LCJzdGFydCI6InNob3Avd2ViLWFiYzEyXHUwMDAwIn0", "remainingItemCount": 1},
      "items": [
        {"metadata": {"name": "web-abc12", "generateName": "web-", "namespace": "shop", "uid": "c3e0",
            "resourceVersion": "184401", "generation": 7, "creationTimestamp": "2026-07-01T10:00:01Z",
            "labels": {"app": "web", "kubernetes.io/service-name": "web",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-07-20T08:15:30Z"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "1f2e",
                                 "controller": true, "blockOwnerDeletion": true}]},
         "addressType": "IPv4",
         "endpoints": [
           {"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-abcde", "uid": "0d7c"},
            "nodeName": "node-a", "zone": "us-east-1a", "hints": {"forZones": [{"name": "us-east-1a"}]}},
           {"addresses": ["10.244.3.12"], "conditions": {"ready": false, "serving": true, "terminating": true},
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-fghij", "uid": "77aa"},
            "nodeName": "node-c", "zone": "us-east-1c"},
           {"addresses": ["10.244.2.8"], "conditions": {"ready": true, "serving": true, "terminating": false},
            "hostname": "web-0",
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "9a1e"},
            "nodeName": "node-b", "zone": "us-east-1b"}],
         "ports": [
           {"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
           {"name": "", "protocol": "TCP", "port": 9090}]},
        {"metadata": {"name": "idle-x7k2p", "generateName": "idle-", "namespace": "shop", "uid": "u",
            "resourceVersion": "170010", "generation": 1, "creationTimestamp": "2026-07-02T10:00:00Z",
            "labels": {"kubernetes.io/service-name": "idle",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
         "addressType": "IPv4", "endpoints": null, "ports": null}
      ]
    }"#;
    let list: List<&serde_json::value::RawValue> = serde_json::from_str(body).expect("list parses");
    assert_eq!(list.kind.as_deref(), Some("EndpointSliceList"));
    assert_eq!(list.api_version.as_deref(), Some("discovery.k8s.io/v1"));
    assert_eq!(list.metadata.resource_version.as_deref(), Some("184467"));
    assert_eq!(list.metadata.remaining_item_count, Some(1));
    assert!(
        list.metadata
            .next_page()
            .is_some_and(|c| c.starts_with("eyJ2Ij"))
    );
    let items: Vec<EndpointSlice> = list
        .items
        .expect("items")
        .iter()
        .map(|i| EndpointSlice::parse(i.get(), false).expect("parses"))
        .collect();
    assert_eq!(items.len(), 2);
    let web = &items[0];
    assert_eq!(web.metadata.service.as_deref(), Some("web"));
    assert_eq!(web.slice.name(), "web-abc12");
    assert_eq!(
        slices_ports([web]),
        pn(&[
            ("9090", vec![n("10.244.1.5", 9090), n("10.244.2.8", 9090)]),
            ("http", vec![n("10.244.1.5", 8080), n("10.244.2.8", 8080)]),
        ])
    );
    let idle = &items[1];
    assert_eq!(idle.metadata.service.as_deref(), Some("idle"));
    assert_eq!(idle.slice.endpoints.iter().count(), 0);
    assert!(idle.slice.ports.is_empty());
    assert_eq!(slices_ports([idle]), PortNodes::new());
}

#[test]
fn slice_service_name_label() {
    let service = |labels: serde_json::Value| {
        slice(json!({"metadata": {"labels": labels}}))
            .metadata
            .service
    };
    assert_eq!(
        service(json!({"app": "x", "kubernetes.io/service-name": "web", "z": {"nested": [1]}}))
            .as_deref(),
        Some("web")
    );
    assert_eq!(service(json!({"kubernetes.io/service-name": ""})), None);
    assert_eq!(service(json!({"app": "web"})), None);
    assert_eq!(service(json!(null)), None);
    assert_eq!(slice(json!({})).metadata.service, None);
    // A label value that is not a string makes the object malformed, as any wrong type does.
    assert!(
        EndpointSlice::parse(
            r#"{"metadata":{"labels":{"kubernetes.io/service-name":5}}}"#,
            false
        )
        .is_err()
    );
}

#[test]
fn service_key_format() {
    assert_eq!(service_key("ns-a", "ep"), "ns-a/ep");
}

// ---- watch stream ----

#[test]
fn bookmark_shapes_from_reference() {
    let lines = [
        (
            r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"184630"},"addressType":"","endpoints":null,"ports":null}}"#,
            "184630",
            false,
        ),
        (
            r#"{"type":"BOOKMARK","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"resourceVersion":"184500"}}}"#,
            "184500",
            false,
        ),
        (
            r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"184500","creationTimestamp":null},"addressType":"","endpoints":null,"ports":null}}"#,
            "184500",
            false,
        ),
        (
            r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"184467","annotations":{"k8s.io/initial-events-end":"true"}},"addressType":"","endpoints":null,"ports":null}}"#,
            "184467",
            true,
        ),
    ];
    for (line, rv, end) in lines {
        let ev: WatchEvent = serde_json::from_str(line).expect("event parses");
        assert_eq!(ev.type_, "BOOKMARK");
        let b: Bookmark = serde_json::from_str(ev.object_text()).expect("bookmark parses");
        assert_eq!(b.resource_version(), Some(rv), "{line}");
        assert_eq!(b.is_initial_events_end(), end, "{line}");
        // The slice-shaped bookmark also parses as a (contentless) slice.
        if line.contains("EndpointSlice") {
            let s = EndpointSlice::parse(ev.object_text(), false).expect("slice parses");
            assert_eq!(slices_ports([&s]), PortNodes::new());
        }
    }
    let b: Bookmark = serde_json::from_str(r#"{"metadata":null}"#).expect("null metadata");
    assert_eq!(b.resource_version(), None);
    let b: Bookmark =
        serde_json::from_str(r#"{"metadata":{"resourceVersion":""}}"#).expect("empty rv");
    assert_eq!(b.resource_version(), None);
}

#[test]
fn watch_event_lines_from_reference() {
    let added = r#"{"type":"ADDED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"web-abc12","generateName":"web-","namespace":"shop","uid":"c3e0a1b2-0000-4000-8000-000000000001","resourceVersion":"184468","generation":1,"creationTimestamp":"2026-07-20T08:15:30Z","labels":{"kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},"addressType":"IPv4","endpoints":[{"addresses":["10.244.1.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"targetRef":{"kind":"Pod","namespace":"shop","name":"web-7d9f-abcde","uid":"0d7c0000-0000-4000-8000-000000000002"},"nodeName":"node-a","zone":"us-east-1a"}],"ports":[{"name":"http","protocol":"TCP","port":8080}]}}"#;
    let ev: WatchEvent = serde_json::from_str(added).expect("parses");
    assert_eq!(ev.type_, "ADDED");
    let s = EndpointSlice::parse(ev.object_text(), false).expect("slice");
    assert_eq!(s.metadata.resource_version.as_deref(), Some("184468"));
    assert_eq!(
        slices_ports([&s]),
        pn(&[("http", vec![n("10.244.1.5", 8080)])])
    );

    let deleted = r#"{"type":"DELETED","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"web","namespace":"shop","uid":"5b1c","resourceVersion":"184700","creationTimestamp":"2026-07-01T10:00:00Z"},"subsets":[{"addresses":[{"ip":"10.244.1.5"}],"ports":[{"port":8080,"protocol":"TCP"}]}]}}"#;
    let ev: WatchEvent = serde_json::from_str(deleted).expect("parses");
    assert_eq!(ev.type_, "DELETED");
    let e = Endpoints::parse(ev.object_text()).expect("endpoints");
    assert_eq!(e.metadata.resource_version.as_deref(), Some("184700"));
    assert_eq!(
        endpoints_ports(&e),
        pn(&[("8080", vec![n("10.244.1.5", 8080)])])
    );

    assert!(serde_json::from_str::<WatchEvent>(r#"{"object":{}}"#).is_err());
    let ev: WatchEvent = serde_json::from_str(r#"{"type":"ADDED"}"#).expect("no object");
    assert!(ev.object.is_none());
}

#[test]
fn status_410_error_event() {
    let line = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 184000 (184321)","reason":"Expired","code":410}}"#;
    let ev: WatchEvent = serde_json::from_str(line).expect("parses");
    assert_eq!(ev.type_, "ERROR");
    let st: Status = serde_json::from_str(ev.object_text()).expect("status");
    assert_eq!(st.code, Some(410));
    assert_eq!(st.reason.as_deref(), Some("Expired"));
    assert_eq!(
        st.message.as_deref(),
        Some("too old resource version: 184000 (184321)")
    );
    assert_eq!(st.metadata, Some(ListMeta::default()));
    assert!(st.is_expired());
    assert_eq!(st.retry_after(), None);
}

#[test]
fn status_expired_continue_token_body() {
    let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{"continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0Ijoic2hvcC93ZWItYWJjMTJcdTAwMDAifQ"},"status":"Failure","message":"The provided continue parameter is too old to display a consistent list result.","reason":"Expired","code":410}"#;
    let st: Status = serde_json::from_str(body).expect("parses");
    assert!(st.is_expired());
    assert_eq!(
        st.metadata.as_ref().and_then(ListMeta::next_page),
        Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0Ijoic2hvcC93ZWItYWJjMTJcdTAwMDAifQ")
    );
}

#[test]
fn status_retry_after_and_other_codes() {
    let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: Too large resource version: 200000, current: 184467","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}"#;
    let st: Status = serde_json::from_str(body).expect("parses");
    assert_eq!(st.code, Some(504));
    assert!(!st.is_expired());
    assert_eq!(st.retry_after(), Some(std::time::Duration::from_secs(1)));
    let gone: Status = serde_json::from_str(r#"{"reason":"Gone"}"#).expect("parses");
    assert!(gone.is_expired());
    let neg: Status =
        serde_json::from_str(r#"{"details":{"retryAfterSeconds":-3}}"#).expect("parses");
    assert_eq!(neg.retry_after(), None);
    let unauthorized: Status = serde_json::from_str(
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
    )
    .expect("parses");
    assert_eq!(unauthorized.code, Some(401));
    assert!(!unauthorized.is_expired());
}

#[test]
fn lenient_nulls_everywhere() {
    let e = ep(json!({"metadata": null, "subsets": [{"addresses": null,
        "notReadyAddresses": null, "ports": null}]}));
    assert_eq!(e.metadata, Meta::default());
    assert_eq!(endpoints_ports(&e), PortNodes::new());
    let list: List<&serde_json::value::RawValue> =
        serde_json::from_str(r#"{"metadata":null,"items":null}"#).expect("parses");
    assert!(list.items.is_none());
    let list: List<&serde_json::value::RawValue> = serde_json::from_str(r#"{}"#).expect("parses");
    assert_eq!(list.metadata, ListMeta::default());
    let sl = slice(json!({"metadata": {"labels": null, "annotations": null},
        "endpoints": [{"conditions": null}]}));
    assert_eq!(slices_ports([&sl]), PortNodes::new());
}

#[test]
fn ip_like_check() {
    for ok in [
        "10.0.0.1",
        "fd00::1",
        "::1",
        "010.000.000.001",
        "FD00::A",
        "::ffff:10.0.0.1",
    ] {
        assert!(dense::is_ip_like(ok), "{ok}");
    }
    for bad in [
        "",
        "web",
        "abc",
        "1234",
        "10.0.0.1 ",
        "10.0.0.1\n",
        "a.example.com",
        "[::1]",
    ] {
        assert!(!dense::is_ip_like(bad), "{bad:?}");
    }
}

#[test]
fn one_rule_for_gone_and_for_retry_hints() {
    assert!(is_gone(Some(410), ""));
    assert!(is_gone(None, "Expired") && is_gone(Some(500), "Gone"));
    assert!(!is_gone(Some(504), "Timeout"));
    // A hint of zero (or less) is no hint, whether from a header or a Status body.
    assert_eq!(retry_hint(0), None);
    assert_eq!(retry_hint(-3), None);
    assert_eq!(retry_hint(3), Some(std::time::Duration::from_secs(3)));
}

#[test]
fn the_service_of_a_truncated_object_comes_from_its_metadata() {
    let line = br#"{"type":"ADDED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"web-x","namespace":"shop","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","endpoints":[{"addresses":["10.0"#;
    assert_eq!(
        Resource::EndpointSlices.service_of_prefix(line),
        Some(("shop".into(), "web".into()))
    );
    assert_eq!(
        Resource::Endpoints.service_of_prefix(line),
        Some(("shop".into(), "web-x".into()))
    );
    // Cut inside the metadata: unknown.
    assert_eq!(
        Resource::EndpointSlices.service_of_prefix(&line[..110]),
        None
    );
    assert_eq!(
        Resource::Endpoints.service_of_prefix(b"{\"type\":\"ADDED\""),
        None
    );
}

#[test]
fn a_null_or_repeated_service_label_makes_the_slice_malformed_and_its_service_still_known() {
    for labels in [
        r#"{"kubernetes.io/service-name":null}"#,
        r#"{"kubernetes.io/service-name":"s","kubernetes.io/service-name":"t"}"#,
    ] {
        let text = format!(
            r#"{{"metadata":{{"name":"a","namespace":"ns","labels":{labels}}},"addressType":"IPv4"}}"#
        );
        assert!(EndpointSlice::parse(&text, false).is_err(), "{labels}");
    }
    // Other labels may hold anything: neither the parse nor the name lookup that follows a failed parse cares.
    let text = r#"{"metadata":{"name":"a","namespace":"ns","labels":{"kubernetes.io/service-name":"s","x":null}},
                   "endpoints":5}"#;
    assert!(EndpointSlice::parse(text, false).is_err());
    assert_eq!(
        Resource::EndpointSlices.service_of(text),
        Some(("ns".into(), "s".into()))
    );
}

// ---- topology ----

fn zoned(ip: &str, zone: Option<&str>, hints: Option<&[&str]>) -> serde_json::Value {
    let mut v = json!({"addresses": [ip], "conditions": {"ready": true}});
    if let Some(z) = zone {
        v["zone"] = json!(z);
    }
    if let Some(h) = hints {
        let zones: Vec<serde_json::Value> = h.iter().map(|z| json!({"name": z})).collect();
        v["hints"] = json!({"forZones": zones});
    }
    v
}

fn placed(host: &str, zone: Option<&str>, priority: i8) -> Node {
    Node {
        topology: Some(NodeTopology {
            zone: zone.map(str::to_owned),
            priority,
        }),
        ..n(host, 80)
    }
}

fn topo(mode: crate::topology::Mode, zone: &str) -> crate::topology::Topology {
    crate::topology::Topology {
        mode,
        zone: zone.into(),
    }
}

#[test]
fn slices_in_three_zones_get_priorities_by_mode() {
    use crate::topology::Mode;
    let http = json!([{"name": "http", "port": 80}]);
    let a = s(
        "svc-a",
        json!([
            zoned("10.0.1.1", Some("za"), Some(&["za"])),
            zoned("10.0.2.1", Some("zb"), Some(&["zb"]))
        ]),
        http.clone(),
    );
    let b = s(
        "svc-b",
        json!([
            zoned("10.0.3.1", Some("zc"), Some(&["zc", "za"])),
            zoned("10.0.1.2", Some("za"), Some(&["za"]))
        ]),
        http.clone(),
    );
    let ports = |t| slices_ports_with([&a, &b], &t)["http"].clone();
    assert_eq!(
        ports(topo(Mode::PreferZone, "za")),
        [
            placed("10.0.1.1", Some("za"), 0),
            placed("10.0.1.2", Some("za"), 0),
            placed("10.0.2.1", Some("zb"), -1),
            placed("10.0.3.1", Some("zc"), -1),
        ]
    );
    assert_eq!(
        ports(topo(Mode::Hints, "za")),
        [
            placed("10.0.1.1", Some("za"), 0),
            placed("10.0.1.2", Some("za"), 0),
            placed("10.0.2.1", Some("zb"), -1),
            placed("10.0.3.1", Some("zc"), 0),
        ]
    );
    assert_eq!(
        ports(topo(Mode::Hints, "zb"))
            .iter()
            .map(|n| n.topology.as_ref().unwrap().priority)
            .collect::<Vec<_>>(),
        [-1, -1, 0, -1]
    );
    // No endpoint hinted for zd: all preferred; unknown gateway zone: all preferred.
    for t in [topo(Mode::Hints, "zd"), topo(Mode::PreferZone, "")] {
        assert!(
            ports(t.clone())
                .iter()
                .all(|n| n.topology.as_ref().unwrap().priority == 0),
            "{t:?}"
        );
    }
    // Off: exactly the nodes without topology.
    assert_eq!(ports(topo(Mode::Off, "za")), slices_ports([&a, &b])["http"]);
    assert!(
        slices_ports([&a, &b])["http"]
            .iter()
            .all(|n| n.topology.is_none())
    );
}

#[test]
fn hints_mode_falls_back_when_one_endpoint_of_the_port_has_no_hints() {
    use crate::topology::Mode;
    let sl = s(
        "svc-a",
        json!([
            zoned("10.0.1.1", Some("za"), Some(&["za"])),
            zoned("10.0.2.1", Some("zb"), None),
            zoned("10.0.9.9", None, None)
        ]),
        json!([{"name": "http", "port": 80}]),
    );
    assert_eq!(
        slices_ports_with([&sl], &topo(Mode::Hints, "za"))["http"],
        [
            placed("10.0.1.1", Some("za"), 0),
            placed("10.0.2.1", Some("zb"), 0),
            placed("10.0.9.9", None, 0),
        ]
    );
    // prefer_zone: an endpoint without a zone is never in the gateway's zone.
    assert_eq!(
        slices_ports_with([&sl], &topo(Mode::PreferZone, "za"))["http"],
        [
            placed("10.0.1.1", Some("za"), 0),
            placed("10.0.2.1", Some("zb"), -1),
            placed("10.0.9.9", None, -1),
        ]
    );
}

#[test]
fn topology_follows_the_copy_of_an_endpoint_that_is_served() {
    use crate::topology::Mode;
    // The same address in two slices: the terminating copy (zone zb) loses to the live one (zone za).
    let http = json!([{"name": "http", "port": 80}]);
    let old = s(
        "svc-a",
        json!([{"addresses": ["10.0.0.1"], "zone": "zb",
                "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        http.clone(),
    );
    let new = s("svc-b", json!([zoned("10.0.0.1", Some("za"), None)]), http);
    for order in [[&old, &new], [&new, &old]] {
        assert_eq!(
            slices_ports_with(order, &topo(Mode::PreferZone, "za"))["http"],
            [Node {
                topology: Some(NodeTopology {
                    zone: Some("za".into()),
                    priority: 0
                }),
                ..n("10.0.0.1", 80)
            }]
        );
    }
}

#[test]
fn placements_are_kept_only_when_asked_for_and_zone_names_once_per_slice() {
    let text = json!({"metadata": {"name": "a"}, "addressType": "IPv4",
        "endpoints": [zoned("10.0.0.1", Some("za"), Some(&["za"])),
                      zoned("10.0.0.2", Some("za"), Some(&["za"])),
                      zoned("10.0.0.3", Some("zb"), Some(&["za", "zb"])),
                      zoned("10.0.0.4", None, None),
                      {"addresses": ["10.0.0.5"], "zone": "zb", "hints": {"forZones": null}},
                      {"addresses": ["web.example"], "zone": "zc"}],
        "ports": [{"name": "http", "port": 80}]})
    .to_string();
    let plain = EndpointSlice::parse(&text, false).unwrap();
    assert!(
        plain.slice.placements.is_none(),
        "no cost when no mode is on"
    );
    let placed = EndpointSlice::parse(&text, true).unwrap();
    let p = placed.slice.placements.as_deref().expect("kept");
    // The endpoint without a usable address is skipped, and its zone with it.
    assert_eq!(p.zone(0), Some("za"));
    assert_eq!(p.zone(2), Some("zb"));
    assert_eq!(p.zone(3), None);
    assert_eq!(p.zone(5), None, "five endpoints kept");
    let names = p.hint_names();
    let set = |i: usize| p.hint_set(i).map(|h| names[h].clone());
    assert_eq!(set(0), Some(vec!["za"]));
    assert_eq!(p.hint_set(0), p.hint_set(1), "equal sets stored once");
    assert_eq!(set(2), Some(vec!["za", "zb"]));
    assert_eq!(set(3), None, "no hints");
    assert_eq!(set(4), Some(vec![]), "hints without zones");
    assert_eq!(names.len(), 3);
}

#[test]
fn zone_and_hints_of_the_wrong_shape_read_as_absent_and_never_fail_the_slice() {
    for extra in [
        json!({"zone": 5}),
        json!({"zone": null, "hints": null}),
        json!({"hints": {"forZones": [{"name": 1}]}}),
        json!({"hints": {"forZones": {"name": "za"}}}),
        json!({"hints": "za", "zone": ["za"]}),
    ] {
        let mut ep = e("10.0.0.1", json!({"ready": true}));
        for (k, v) in extra.as_object().unwrap() {
            ep[k] = v.clone();
        }
        let text = json!({"metadata": {"name": "a"}, "addressType": "IPv4", "endpoints": [ep],
                          "ports": [{"name": "http", "port": 80}]})
        .to_string();
        for placed in [false, true] {
            let sl = EndpointSlice::parse(&text, placed).unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert_eq!(
                slices_ports([&sl]),
                pn(&[("http", vec![n("10.0.0.1", 80)])])
            );
            if let Some(p) = sl.slice.placements.as_deref() {
                assert_eq!((p.zone(0), p.hint_set(0)), (None, None), "{extra}");
            }
        }
    }
}

#[test]
fn hints_are_not_used_over_the_terminating_fallback() {
    use crate::topology::Mode;
    let draining = |ip: &str, zone: &str| {
        json!({"addresses": [ip], "zone": zone, "hints": {"forZones": [{"name": zone}]},
               "conditions": {"ready": false, "serving": true, "terminating": true}})
    };
    let sl = s(
        "svc-a",
        json!([draining("10.0.0.1", "za"), draining("10.0.0.2", "zb")]),
        json!([{"name": "http", "port": 80}]),
    );
    assert_eq!(
        slices_ports_with([&sl], &topo(Mode::Hints, "za"))["http"],
        [
            placed("10.0.0.1", Some("za"), 0),
            placed("10.0.0.2", Some("zb"), 0)
        ]
    );
    // prefer_zone still ranks by zone: it does not follow kube-proxy's hints.
    assert_eq!(
        slices_ports_with([&sl], &topo(Mode::PreferZone, "za"))["http"],
        [
            placed("10.0.0.1", Some("za"), 0),
            placed("10.0.0.2", Some("zb"), -1)
        ]
    );
}

#[test]
fn a_slice_of_more_zones_than_indexes_keeps_the_rest_unplaced() {
    let count = usize::from(u16::MAX) + 10;
    let endpoints: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            json!({"addresses": [format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)],
                        "zone": format!("z{i}")})
        })
        .collect();
    let text = json!({"metadata": {"name": "a"}, "addressType": "IPv4", "endpoints": endpoints,
                      "ports": [{"name": "http", "port": 80}]})
    .to_string();
    let sl = EndpointSlice::parse(&text, true).unwrap();
    let p = sl.slice.placements.as_deref().unwrap();
    assert_eq!(p.zone(0), Some("z0"));
    assert_eq!(p.zone(65_534), Some("z65534"));
    assert_eq!(p.zone(65_535), None, "the index table is full");
    assert_eq!(p.zone(count - 1), None);
}
