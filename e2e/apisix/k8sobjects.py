"""Endpoints and EndpointSlice objects for the fake API server, built from backends.

Every backend has its own port, so each one is a subset of its own (Endpoints) or a slice of its own
(EndpointSlices), as Kubernetes groups addresses that share a port set.
"""

LABELS = {"e2e": "yes"}


def endpoints(namespace, name, backends, port_name="http", labels=LABELS):
    """A v1 Endpoints; port_name None gives an unnamed port (the service name then uses the port number)."""
    subsets = []
    for b in backends:
        port = {"port": b.port, "protocol": "TCP"}
        if port_name is not None:
            port["name"] = port_name
        subsets.append({"addresses": [{"ip": b.ip}], "ports": [port]})
    meta = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets}


def endpoint_slices(namespace, service, backends, port_name="http", labels=LABELS, zones=None, ready=True):
    """One discovery.k8s.io/v1 EndpointSlice per backend, all owned by `service`; `zones` (one per backend) sets
    each endpoint's zone, `ready` its ready condition (a bool, or one per backend)."""
    out = []
    for i, b in enumerate(backends):
        endpoint = {"addresses": [b.ip], "conditions": {"ready": ready[i] if isinstance(ready, list) else ready}}
        if zones:
            endpoint["zone"] = zones[i]
        lab = dict(labels or {})
        lab["kubernetes.io/service-name"] = service
        out.append({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{i}", "namespace": namespace, "labels": lab},
            "addressType": "IPv4",
            "endpoints": [endpoint],
            "ports": [{"name": port_name, "port": b.port, "protocol": "TCP"}],
        })
    return out
