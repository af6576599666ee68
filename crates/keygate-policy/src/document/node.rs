//! A YAML/JSON document as a tree of nodes that remember where they were written.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Where a node starts in its file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// A parsed value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub pos: Position,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys are scalars rendered as strings, in document order.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The entry for `key` when this node is a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the node's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a map",
        }
    }
}

/// Why a document could not be read at all.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Position,
    pub message: String,
}

/// Nesting deeper than this is refused (policies are shallow; this bounds recursion).
pub const MAX_DEPTH: usize = 64;
/// Total nodes (after alias expansion) a document may have.
pub const MAX_NODES: usize = 200_000;

/// Parses YAML (JSON is read as YAML's flow style) into a [`Node`] tree.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    Builder::default().run(text)
}

enum Frame {
    Seq(Vec<Node>, Position, usize),
    Map(
        Vec<(String, Node)>,
        Option<(String, Position)>,
        Position,
        usize,
    ),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
}

fn position(span: &Span) -> Position {
    Position {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

impl Builder {
    fn run(mut self, text: &str) -> Result<Node, SyntaxError> {
        let mut documents = 0;
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|err| SyntaxError {
                pos: Position {
                    line: err.marker().line(),
                    col: err.marker().col() + 1,
                },
                message: err.info().to_owned(),
            })?;
            let pos = position(&span);
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(SyntaxError {
                            pos,
                            message: "a policy file holds one document, found a second".into(),
                        });
                    }
                }
                Event::Scalar(text, style, anchor, tag) => {
                    if let Some(tag) = tag {
                        if !tag.is_yaml_core_schema() {
                            return Err(SyntaxError {
                                pos,
                                message: format!(
                                    "YAML read '{}{}' as a tag; quote values that start with '!' (e.g. \"!(expr)\")",
                                    tag.handle, tag.suffix
                                ),
                            });
                        }
                    }
                    let node = Node {
                        value: scalar(&text, style),
                        pos,
                    };
                    self.push(node, anchor)?;
                }
                Event::SequenceStart(anchor, _) => {
                    self.open(Frame::Seq(Vec::new(), pos, anchor), pos)?
                }
                Event::MappingStart(anchor, _) => {
                    self.open(Frame::Map(Vec::new(), None, pos, anchor), pos)?
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor) = match self.stack.pop() {
                        Some(Frame::Seq(items, pos, anchor)) => (
                            Node {
                                value: NodeValue::Seq(items),
                                pos,
                            },
                            anchor,
                        ),
                        Some(Frame::Map(entries, _, pos, anchor)) => (
                            Node {
                                value: NodeValue::Map(entries),
                                pos,
                            },
                            anchor,
                        ),
                        None => {
                            return Err(SyntaxError {
                                pos,
                                message: "unbalanced collection end".into(),
                            })
                        }
                    };
                    self.push(node, anchor)?;
                }
                Event::Alias(id) => {
                    let node = self.anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                        pos,
                        message: "alias refers to an unknown anchor".into(),
                    })?;
                    self.nodes += count(&node);
                    self.push(node, 0)?;
                }
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            }
        }
        Ok(self.root.unwrap_or(Node {
            value: NodeValue::Null,
            pos: Position { line: 1, col: 1 },
        }))
    }

    fn open(&mut self, frame: Frame, pos: Position) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                pos: node.pos,
                message: format!("document has more than {MAX_NODES} values"),
            });
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending, ..)) => match pending.take() {
                None => {
                    let key = match node.value {
                        NodeValue::Str(s) => s,
                        NodeValue::Int(i) => i.to_string(),
                        NodeValue::Bool(b) => b.to_string(),
                        NodeValue::Float(f) => f.to_string(),
                        NodeValue::Null => "null".to_owned(),
                        NodeValue::Seq(_) | NodeValue::Map(_) => {
                            return Err(SyntaxError {
                                pos: node.pos,
                                message: "map keys must be scalars".into(),
                            })
                        }
                    };
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: format!("duplicate key '{key}'"),
                        });
                    }
                    *pending = Some((key, node.pos));
                }
                Some((key, _)) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

fn count(node: &Node) -> usize {
    match &node.value {
        NodeValue::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        NodeValue::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + count(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Resolves a scalar by YAML 1.2's core schema; quoted scalars are always strings.
fn scalar(text: &str, style: ScalarStyle) -> NodeValue {
    if style != ScalarStyle::Plain {
        return NodeValue::Str(text.to_owned());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return NodeValue::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return NodeValue::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return NodeValue::Int(i);
        }
    }
    let numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if numeric {
        if let Ok(i) = text.parse::<i64>() {
            return NodeValue::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return NodeValue::Float(f);
        }
    }
    NodeValue::Str(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_positions_and_types() {
        let doc = parse("a: 1\nb:\n  - x\n  - 'true'\n  - true\nc: 2.5\nd: ~\n").unwrap();
        let b = doc.get("b").unwrap();
        assert_eq!(b.pos, Position { line: 3, col: 3 });
        let NodeValue::Seq(items) = &b.value else {
            panic!("not a list")
        };
        assert_eq!(items[0].value, NodeValue::Str("x".into()));
        assert_eq!(items[1].value, NodeValue::Str("true".into()));
        assert_eq!(items[2].value, NodeValue::Bool(true));
        assert_eq!(doc.get("a").unwrap().value, NodeValue::Int(1));
        assert_eq!(doc.get("c").unwrap().value, NodeValue::Float(2.5));
        assert_eq!(doc.get("d").unwrap().value, NodeValue::Null);
    }

    #[test]
    fn json_is_read_with_positions() {
        let doc = parse("{\n  \"on_http_request\": [\n    {\"name\": \"r\"}\n  ]\n}").unwrap();
        let rules = doc.get("on_http_request").unwrap();
        let NodeValue::Seq(items) = &rules.value else {
            panic!("not a list")
        };
        assert_eq!(
            items[0].get("name").unwrap().value,
            NodeValue::Str("r".into())
        );
        assert_eq!(items[0].pos.line, 3);
    }

    #[test]
    fn unquoted_bang_gets_a_hint() {
        let err = parse("e:\n  - !(a in b)\n").unwrap_err();
        assert!(err.message.contains("quote"), "{}", err.message);
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(500) + &"]".repeat(500);
        // Refused by our depth limit or the YAML parser's own recursion limit; never a stack overflow.
        let err = parse(&text).unwrap_err();
        assert!(
            err.message.contains("nesting") || err.message.contains("recursion limit"),
            "{}",
            err.message
        );
        let err = parse(&"- ".repeat(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.message.contains("nesting"), "{}", err.message);
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("a{}", i - 1)
            };
            text.push_str(&format!("a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate key 'a'"));
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn broken_yaml_is_an_error_not_a_panic() {
        for text in [
            "a: [1, 2",
            "a: {b",
            "- a\nb: c",
            "\"unterminated",
            "a:\n\t- b",
            "[]]",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
    }
}
