//! Unit tests: a fixture request and scope, then one module per concern.

mod catalog;
mod check;
mod errors;
mod functions;
mod ip_intel;
mod secrets;
mod shortcut;
mod templates;
mod variables;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use crate::{
    ActionResults, Compiler, ConnInfo, EvalError, MemorySecrets, RequestView, ResponseView, Scope,
    TlsInfo, Value, Vars,
};

/// A request, an optional response and everything else a scope borrows.
pub(crate) struct Fixture {
    pub compiler: Compiler,
    pub conn: ConnInfo,
    pub req: http::request::Parts,
    pub res: Option<http::response::Parts>,
    pub vars: Vars,
    pub actions: ActionResults,
    pub secrets: MemorySecrets,
    pub extra: Vec<(&'static str, crate::Variable)>,
}

pub(crate) fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().method("POST").uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

impl Fixture {
    pub fn new(headers: &[(&str, &str)]) -> Self {
        Self::with_uri("/v1/chat/completions?model=gpt-4o&Tag=a&tag=b", headers)
    }

    pub fn with_uri(uri: &str, headers: &[(&str, &str)]) -> Self {
        let mut secrets = MemorySecrets::default();
        secrets.insert("gateway-auth", "access-token", "s3cret-token");
        secrets.insert("gateway-auth", "client-a-token", "token-a");
        secrets.insert("gateway-auth", "client-b-token", "token-b");
        Self {
            compiler: Compiler::new(),
            conn: ConnInfo {
                client_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                client_port: 50123,
                server_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                server_port: 8443,
                tls: None,
                started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_719_243_000),
                ip_intel: Default::default(),
            },
            req: request(uri, headers),
            res: None,
            vars: Vars::default(),
            actions: ActionResults::default(),
            secrets,
            extra: Vec::new(),
        }
    }

    pub fn with_tls(mut self) -> Self {
        self.conn.tls = Some(TlsInfo {
            version: "TLSv1.3".to_owned(),
            cipher_suite: "TLS13_AES_128_GCM_SHA256".to_owned(),
            sni: "gw.example.com".to_owned(),
            negotiated_alpn: "h2".to_owned(),
        });
        self
    }

    pub fn with_response(mut self, status: u16, headers: &[(&str, &str)]) -> Self {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.res = Some(builder.body(()).unwrap().into_parts().0);
        self
    }

    pub fn scope(&self) -> Scope<'_> {
        Scope {
            conn: &self.conn,
            req: Some(RequestView {
                head: &self.req,
                scheme: "https",
                id: "req_0123",
            }),
            res: self.res.as_ref().map(|head| ResponseView { head }),
            vars: &self.vars,
            actions: &self.actions,
            secrets: &self.secrets,
            extra: &self.extra,
        }
    }

    pub fn eval(&self, source: &str) -> Result<Value, EvalError> {
        let expression = self
            .compiler
            .expression(source)
            .unwrap_or_else(|e| panic!("`{source}` does not compile: {e}"));
        expression.eval(&self.scope())
    }

    pub fn value(&self, source: &str) -> Value {
        self.eval(source)
            .unwrap_or_else(|e| panic!("`{source}` failed: {e}"))
    }

    pub fn truth(&self, source: &str) -> bool {
        let expression = self
            .compiler
            .expression(source)
            .unwrap_or_else(|e| panic!("`{source}` does not compile: {e}"));
        expression
            .eval_bool(&self.scope())
            .unwrap_or_else(|e| panic!("`{source}` failed: {e}"))
    }

    pub fn error(&self, source: &str) -> String {
        match self.eval(source) {
            Ok(value) => panic!("`{source}` should fail, got {value:?}"),
            Err(error) => error.message,
        }
    }
}

pub(crate) fn string(s: &str) -> Value {
    Value::String(s.to_owned().into())
}

#[test]
fn compiled_values_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<crate::Compiler>();
    assert_send_sync::<crate::Expression>();
    assert_send_sync::<crate::Template>();
    assert_send_sync::<crate::Vars>();
    assert_send_sync::<crate::ActionResults>();
}
