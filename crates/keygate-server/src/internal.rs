//! Internal endpoints (`--internal-endpoint NAME=POLICY[,upstream=URL]`): named policies, each
//! with an optional upstream, that `forward-internal` runs in process. The set is fixed at
//! start; each policy file reloads like the main one, keeping its last good policy on error.

use std::collections::HashMap;

use arc_swap::ArcSwapOption;
use keygate_cel::Compiler;
use keygate_http::HttpClient;
use keygate_policy::{
    Deps, Exchange, GatewayError, InternalFuture, InternalHops, Policy, PolicyError,
};

use crate::config::InternalEndpointConfig;
use crate::gateway::{load_policy, log_warnings};
use crate::{handler, proxy};

/// Every internal endpoint, by name.
pub struct InternalEndpoints {
    endpoints: HashMap<String, Endpoint>,
    http: HttpClient,
}

struct Endpoint {
    config: InternalEndpointConfig,
    /// Empty only until [`InternalEndpoints::load_all`] ran: the policies may target each other,
    /// so every name exists before any policy compiles.
    policy: ArcSwapOption<Policy>,
}

impl InternalEndpoints {
    pub fn new(configs: &[InternalEndpointConfig], http: HttpClient) -> Self {
        let endpoints = configs
            .iter()
            .map(|config| {
                let endpoint = Endpoint {
                    config: config.clone(),
                    policy: ArcSwapOption::empty(),
                };
                (config.name.clone(), endpoint)
            })
            .collect();
        Self { endpoints, http }
    }

    /// The endpoints' configurations.
    pub fn configs(&self) -> impl Iterator<Item = &InternalEndpointConfig> {
        self.endpoints.values().map(|e| &e.config)
    }

    /// Compiles every endpoint's policy (at start: the first invalid one is the error).
    pub fn load_all(&self, compiler: &Compiler, deps: &Deps) -> Result<(), PolicyError> {
        for name in self.endpoints.keys() {
            self.reload(name, compiler, deps)?;
        }
        Ok(())
    }

    /// Compiles `name`'s policy file and swaps it in; on error the previous policy stays.
    pub fn reload(&self, name: &str, compiler: &Compiler, deps: &Deps) -> Result<(), PolicyError> {
        let Some(endpoint) = self.endpoints.get(name) else {
            return Ok(());
        };
        let (policy, _) = load_policy(&endpoint.config.policy, compiler, deps)?;
        log_warnings(&endpoint.config.policy, &policy);
        endpoint.policy.store(Some(policy.into()));
        Ok(())
    }
}

impl keygate_policy::InternalEndpoints for InternalEndpoints {
    fn contains(&self, name: &str) -> bool {
        self.endpoints.contains_key(name)
    }

    fn serve<'a>(&'a self, name: &'a str, ex: &'a mut Exchange) -> InternalFuture<'a> {
        Box::pin(async move {
            let endpoint = self.endpoints.get(name);
            let Some((endpoint, policy)) = endpoint.and_then(|e| Some((e, e.policy.load_full()?)))
            else {
                return Some(GatewayError::no_route().into_response(ex.api_format));
            };
            // Once, on the way in from the public listener; later hops keep them.
            if InternalHops::of(&ex.request) == 1 {
                let mut headers = std::mem::take(&mut ex.request.headers);
                proxy::add_forwarded(&mut headers, ex);
                ex.request.headers = headers;
            }
            let upstream = endpoint.config.upstream.as_ref();
            handler::respond(&policy, &self.http, upstream, ex).await
        })
    }
}
