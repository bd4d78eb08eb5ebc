//! k8s-disc: Kubernetes service discovery for OpenResty and Apache APISIX.

pub mod model;
pub mod store;
