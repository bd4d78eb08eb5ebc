//! The two watched kinds as they arrive, borrowed from the event or page text: only the fields publishing needs,
//! with strings borrowed where the text has no escapes. Nothing here outlives the parse; `dense` packs it.
//!
//! Lenient on purpose: unknown fields are ignored, every optional field and every list may be missing or `null`
//! (real apiservers emit `"endpoints": null` and `"ports": null` for empty slices, and an Endpoints object without
//! backends has no `subsets` at all).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::SERVICE_NAME_LABEL;

/// Deserializes `null` as `T::default()`, for fields that may still arrive as `null` from odd producers.
pub(super) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The items of an optional list; missing and `null` read as empty.
pub(super) fn items<T>(list: &Option<Vec<T>>) -> &[T] {
    list.as_deref().unwrap_or_default()
}

/// A string borrowed from the input when it has no escapes (names and addresses never do), copied otherwise.
pub(super) struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

type Text<'a> = Option<Str<'a>>;

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct Meta<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub namespace: Text<'a>,
    #[serde(borrow)]
    pub resource_version: Text<'a>,
    #[serde(borrow, deserialize_with = "null_as_default")]
    pub labels: ServiceLabel<'a>,
}

/// Of all labels, only the one that ties an EndpointSlice to its Service; the others are skipped unread.
#[derive(Default)]
pub(super) struct ServiceLabel<'a>(pub Text<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for ServiceLabel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Labels;
        impl<'de> Visitor<'de> for Labels {
            type Value = ServiceLabel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut found = None;
                while let Some(key) = m.next_key::<Str<'de>>()? {
                    if &*key == SERVICE_NAME_LABEL {
                        // A label is a string; a null one, or the label twice, makes the object malformed rather
                        // than quietly moving the slice out of its service.
                        if found.is_some() {
                            return Err(de::Error::duplicate_field(SERVICE_NAME_LABEL));
                        }
                        found = Some(m.next_value::<Str<'de>>()?);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ServiceLabel(found))
            }
        }
        d.deserialize_map(Labels)
    }
}

// ---- core/v1 Endpoints ----

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct Endpoints<'a> {
    #[serde(borrow, deserialize_with = "null_as_default")]
    pub metadata: Meta<'a>,
    #[serde(borrow)]
    pub subsets: Option<Vec<Subset<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct Subset<'a> {
    /// Ready addresses: the only ones served. `notReadyAddresses` are never served and not read.
    #[serde(borrow)]
    pub addresses: Option<Vec<Address<'a>>>,
    #[serde(borrow)]
    pub ports: Option<Vec<Port<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct Address<'a> {
    #[serde(borrow)]
    pub ip: Text<'a>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct Port<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    /// `None` means "all ports" in a slice; never produced for Service-owned objects and not usable as an
    /// upstream, so such ports are skipped.
    pub port: Option<i64>,
}

// ---- discovery.k8s.io/v1 EndpointSlice ----

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct EndpointSlice<'a> {
    #[serde(borrow, deserialize_with = "null_as_default")]
    pub metadata: Meta<'a>,
    #[serde(borrow)]
    pub address_type: Text<'a>,
    #[serde(borrow)]
    pub endpoints: Option<Vec<SliceEndpoint<'a>>>,
    #[serde(borrow)]
    pub ports: Option<Vec<Port<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct SliceEndpoint<'a> {
    #[serde(borrow)]
    pub addresses: FirstAddress<'a>,
    #[serde(deserialize_with = "null_as_default")]
    pub conditions: Conditions,
    /// The zone the endpoint runs in.
    #[serde(borrow)]
    pub zone: Lenient<Str<'a>>,
    /// Where the EndpointSlice controller wants the endpoint used (`trafficDistribution: PreferClose`, or the
    /// `service.kubernetes.io/topology-mode: Auto` annotation); absent when the endpoint has no hints.
    #[serde(borrow)]
    pub hints: Lenient<Hints<'a>>,
}

/// A value read only when it has the expected shape; any other (a number where a string belongs, `null`) reads as
/// absent instead of making the whole object malformed. For the fields only a topology mode reads, so that a
/// cluster without one serves whatever it served before they existed. Its text is captured as it is (no copy)
/// and parsed on its own.
pub(super) struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de: 'a, 'a, T: Deserialize<'a>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'a serde_json::value::RawValue>::deserialize(d)?;
        Ok(Lenient(serde_json::from_str(raw.get()).ok()))
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct Hints<'a> {
    #[serde(borrow)]
    pub for_zones: Option<Vec<ForZone<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ForZone<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
}

/// Endpoint conditions. Kubernetes defines nil `ready`/`serving` as true and nil `terminating` as false.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct Conditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

/// The first of an endpoint's addresses, the one consumers use (the controller writes exactly one); the rest are
/// skipped unread, so no list is ever allocated.
#[derive(Default)]
pub(super) struct FirstAddress<'a>(pub Text<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstAddress<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct First;
        impl<'de> Visitor<'de> for First {
            type Value = FirstAddress<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of addresses")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstAddress(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let first = s.next_element::<Str<'de>>()?;
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstAddress(first))
            }
        }
        d.deserialize_any(First)
    }
}
