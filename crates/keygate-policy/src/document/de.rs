//! Strict serde deserialization from a [`Node`] tree. Errors carry the position and field path
//! of the innermost value that was wrong, so action configs are plain `#[derive(Deserialize)]`
//! structs with `deny_unknown_fields` and still get `file:line:col: path: message` errors.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::node::{Node, NodeValue, Position};

/// A deserialization error located in the document.
#[derive(Debug, Clone)]
pub struct DeError {
    pub message: String,
    /// Set by the innermost node the error passed through.
    pub at: Option<(Position, String)>,
}

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            at: None,
        }
    }
}

/// Deserializes `node` (found at `path`) into `T`.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_owned(),
    })
}

/// Joins a field path and a map key.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl NodeDe<'_> {
    fn locate(&self, mut err: DeError) -> DeError {
        if err.at.is_none() {
            err.at = Some((self.node.pos, self.path.clone()));
        }
        err
    }

    fn expected(&self, what: &str) -> DeError {
        self.locate(DeError {
            message: format!("expected {what}, found {}", self.node.type_name()),
            at: None,
        })
    }
}

macro_rules! forward_scalar {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(b) => visitor.visit_bool(*b),
            NodeValue::Int(i) => visitor.visit_i64(*i),
            NodeValue::Float(f) => visitor.visit_f64(*f),
            NodeValue::Str(s) => visitor.visit_str(s),
            NodeValue::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            NodeValue::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        result.map_err(|err| self.locate(err))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            NodeValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Str(s) => visitor.visit_str(s).map_err(|err| self.locate(err)),
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Seq(_) => self.deserialize_any(visitor),
            _ => Err(self.expected("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Map(_) => self.deserialize_any(visitor),
            _ => Err(self.expected("a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Str(s) => {
                let de: de::value::StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                visitor.visit_enum(de).map_err(|err| self.locate(err))
            }
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    forward_scalar! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'a str,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (String, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'a str,
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, node)) = self.entries.next() else {
            return Ok(None);
        };
        let path = join_key(self.path, key);
        let key_de: de::value::StrDeserializer<'_, DeError> = key.as_str().into_deserializer();
        let result = seed.deserialize(key_de).map_err(|mut err| {
            err.at.get_or_insert((node.pos, path.clone()));
            err
        });
        self.value = Some((node, path));
        result.map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let (node, path) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value without a key"))?;
        seed.deserialize(NodeDe { node, path })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::document::node::parse;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        capacity: u32,
        #[serde(default)]
        names: Vec<String>,
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        SlidingWindow,
    }

    fn load(text: &str) -> Result<Config, DeError> {
        from_node(&parse(text).unwrap(), "config")
    }

    #[test]
    fn reads_a_valid_config() {
        let config = load("capacity: 5\nnames: [a, b]\nmode: sliding_window\n").unwrap();
        assert_eq!(config.capacity, 5);
        assert_eq!(config.names, ["a", "b"]);
        assert_eq!(config.mode, Some(Mode::SlidingWindow));
    }

    #[test]
    fn unknown_field_is_located() {
        let err = load("capacity: 5\ncapcity: 6\n").unwrap_err();
        let (pos, path) = err.at.unwrap();
        assert_eq!((pos.line, path.as_str()), (2, "config.capcity"));
        assert!(
            err.message.contains("unknown field `capcity`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn wrong_type_is_located_at_the_value() {
        let err = load("capacity: 5\nnames:\n  - a\n  - [x]\n").unwrap_err();
        let (pos, path) = err.at.unwrap();
        assert_eq!(
            (pos.line, pos.col, path.as_str()),
            (4, 5, "config.names[1]")
        );
        let err = load("capacity: lots\n").unwrap_err();
        assert_eq!(err.at.unwrap().1, "config.capacity");
        let err = load("capacity: -1\n").unwrap_err();
        assert_eq!(err.at.unwrap().1, "config.capacity");
    }

    #[test]
    fn missing_field_and_bad_variant() {
        let err = load("names: []\n").unwrap_err();
        assert!(err.message.contains("missing field `capacity`"));
        assert_eq!(err.at.unwrap().1, "config");
        let err = load("capacity: 1\nmode: fixed\n").unwrap_err();
        assert_eq!(err.at.unwrap().1, "config.mode");
    }
}
