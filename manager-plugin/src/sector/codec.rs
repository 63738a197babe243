//! The JSON building blocks of Go's sector state: [`Cid`] (`{"/": ...}`, `null` when undefined), [`Bytes`]
//! (base64, Go's `[]byte`), [`GoJson`] (a value kept as Go wrote it) and the `null`-tolerant field decoder.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A CID, serialized the way Go's `cid.Cid` is: `{"/": "bafy..."}`, or `null` for Go's undefined CID
/// (`cid.Undef`, an empty `value` here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Cid {
    /// The CID's string form; empty for Go's `cid.Undef`.
    pub value: String,
}

#[derive(Serialize, Deserialize)]
struct CidObject {
    #[serde(rename = "/")]
    value: String,
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // go-cid `MarshalJSON`: an undefined CID is `null`.
        if self.value.is_empty() {
            return s.serialize_none();
        }
        s.serialize_some(&CidObject { value: self.value.clone() })
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Cid { value: Option::<CidObject>::deserialize(d)?.map(|c| c.value).unwrap_or_default() })
    }
}

/// Bytes serialized as base64, like Go's `[]byte` (`null` reads as empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        BASE64.decode(text.as_bytes()).map(Bytes).map_err(de::Error::custom)
    }
}

/// Decodes a field Go may write as `null` (a nil slice, pointer or map decoded into a value): `null` is the
/// type's default, as Go's `encoding/json` leaves the field at its zero value.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A JSON value kept exactly as Go wrote it, for the parts of Go's sector state damocles-rs carries but does
/// not interpret: a legacy deal's `Proposal` (`market.DealProposal`) and a V2 piece's `DealInfo`
/// (`core.DealInfoV2`, venus `market.DealInfoV2` embedded). Object keys keep their order. Plain serde, so it
/// crosses any serde format, not only JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum GoJson {
    /// `null` (Go's nil pointer).
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    Uint(u64),
    /// A number with a fraction, as the bits of an `f64` (so the type stays `Eq`).
    Float(u64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<GoJson>),
    /// An object, keys in the order written.
    Object(Vec<(String, GoJson)>),
}

impl GoJson {
    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, GoJson::Null)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&GoJson> {
        match self {
            GoJson::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as an unsigned integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            GoJson::Uint(n) => Some(*n),
            _ => None,
        }
    }
}

impl Serialize for GoJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            GoJson::Null => s.serialize_none(),
            GoJson::Bool(b) => s.serialize_bool(*b),
            GoJson::Int(n) => s.serialize_i64(*n),
            GoJson::Uint(n) => s.serialize_u64(*n),
            GoJson::Float(bits) => s.serialize_f64(f64::from_bits(*bits)),
            GoJson::String(text) => s.serialize_str(text),
            GoJson::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            GoJson::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for GoJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GoJsonVisitor)
    }
}

struct GoJsonVisitor;

impl<'de> Visitor<'de> for GoJsonVisitor {
    type Value = GoJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<GoJson, E> {
        Ok(GoJson::Null)
    }

    fn visit_none<E>(self) -> Result<GoJson, E> {
        Ok(GoJson::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<GoJson, D::Error> {
        GoJson::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<GoJson, E> {
        Ok(GoJson::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<GoJson, E> {
        Ok(if v >= 0 { GoJson::Uint(v as u64) } else { GoJson::Int(v) })
    }

    fn visit_u64<E>(self, v: u64) -> Result<GoJson, E> {
        Ok(GoJson::Uint(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<GoJson, E> {
        Ok(GoJson::Float(v.to_bits()))
    }

    fn visit_str<E>(self, v: &str) -> Result<GoJson, E> {
        Ok(GoJson::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<GoJson, E> {
        Ok(GoJson::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GoJson, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(GoJson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GoJson, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, GoJson>()? {
            members.push((key, value));
        }
        Ok(GoJson::Object(members))
    }
}
