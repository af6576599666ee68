//! CEL environment for Traffic Policy: lazy request/connection views, ngrok macro functions,
//! `${...}` templates.
//!
//! Everything is compiled once ([`Compiler::expression`], [`Compiler::template`]) when a policy
//! loads; the request path only evaluates, against a [`Scope`] that borrows the live request.
//!
//! Design notes (see `docs/cel.md`):
//! * variables are answered on demand by a resolver over the borrowed request, never copied up
//!   front; `req.headers` is a case-insensitive lazy map where a missing header is an empty
//!   list whose element `[0]` is `''`;
//! * the parsed expression is rewritten once: `==`/`!=`/`in` compare strings in constant time,
//!   `matches` with a literal pattern uses a regex compiled at load, `secrets.get` and the
//!   `getReqHeader` family become lookups;
//! * evaluation errors describe types, never values.

/// `impl Val` for a view read through its own `Indexer`: its CEL type (a static), `as_indexer`
/// and `into_indexer`, plus the further capability methods written after the `;`.
macro_rules! indexed_val {
    ($view:ty, $cel_type:expr; $($methods:tt)*) => {
        impl cel::common::value::Val for $view {
            fn get_type(&self) -> &cel::common::types::Type {
                &$cel_type
            }
            fn cel_type() -> &'static cel::common::types::Type {
                &$cel_type
            }
            fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn cel::common::traits::Indexer + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn into_indexer<'v>(self: Box<Self>) -> Option<Box<dyn cel::common::traits::Indexer + 'v>>
            where
                Self: 'v,
            {
                Some(self)
            }
            $($methods)*
        }
    };
}

mod backtick;
mod catalog;
mod check;
mod compiler;
mod error;
mod functions;
mod guard;
mod ip_intel;
mod json;
mod resolver;
mod rewrite;
mod scan;
mod scope;
mod secrets;
mod shortcut;
mod template;
mod views;

pub use catalog::{FUNCTIONS, VARIABLES};
pub use cel::Value;
pub use check::ACTION_RESULTS;
pub use compiler::{Compiler, Expression};
pub use error::{CompileError, EvalError};
pub use guard::{MAX_NESTING, MAX_OPERATORS, MAX_SOURCE_LEN};
pub use ip_intel::{IpFacts, IpIntel, IpIntelCache, Place, Provides};
pub use json::{from_json, to_json};
pub use rewrite::MAX_DEPTH;
pub use scope::{
    ActionResults, ConnInfo, RequestView, ResponseView, Scope, TlsInfo, Variable, Vars,
};
pub use secrets::{MemorySecrets, SecretError, SecretSource};
pub use template::{stringify, Template};

#[cfg(test)]
mod tests;
