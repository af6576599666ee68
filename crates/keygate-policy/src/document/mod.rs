//! Policy documents as position-aware trees, and strict deserialization from them.

mod de;
mod node;

pub use de::{from_node, join_key, DeError};
pub use node::{parse, Node, NodeValue, Position, SyntaxError, MAX_DEPTH, MAX_NODES};
