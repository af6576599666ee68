//! The `oauth` action's providers: endpoints, default scopes and how each one's user document
//! maps to an identity. `--provider-url oauth-<provider>=URL` moves every endpoint of a provider
//! to `URL` + the endpoint's path (a proxy, or a local provider in tests).

use std::collections::HashMap;

use http::Uri;
use serde_json::Value;

use super::idp::{text_field, Endpoints, Identity, TokenAuth};

/// One OAuth 2.0 provider.
pub(in crate::actions) struct Provider {
    pub name: &'static str,
    authorize: &'static str,
    token: &'static str,
    userinfo: &'static str,
    pub default_scopes: &'static [&'static str],
    /// Reads the userinfo document.
    pub(super) identity: fn(&Value) -> Option<Identity>,
}

/// Every provider, by `provider` name.
pub(in crate::actions) static PROVIDERS: &[Provider] = &[
    Provider {
        name: "amazon",
        authorize: "https://www.amazon.com/ap/oa",
        token: "https://api.amazon.com/auth/o2/token",
        userinfo: "https://api.amazon.com/user/profile",
        default_scopes: &["profile"],
        identity: |doc| keyed(doc, "user_id"),
    },
    Provider {
        name: "facebook",
        authorize: "https://www.facebook.com/v19.0/dialog/oauth",
        token: "https://graph.facebook.com/v19.0/oauth/access_token",
        userinfo: "https://graph.facebook.com/me?fields=id,name,email",
        default_scopes: &["email", "public_profile"],
        identity: |doc| keyed(doc, "id"),
    },
    Provider {
        name: "github",
        authorize: "https://github.com/login/oauth/authorize",
        token: "https://github.com/login/oauth/access_token",
        userinfo: "https://api.github.com/user",
        default_scopes: &["read:user", "user:email"],
        identity: |doc| keyed(doc, "id"),
    },
    Provider {
        name: "gitlab",
        authorize: "https://gitlab.com/oauth/authorize",
        token: "https://gitlab.com/oauth/token",
        userinfo: "https://gitlab.com/oauth/userinfo",
        default_scopes: &["openid", "profile", "email"],
        identity: standard_identity,
    },
    Provider {
        name: "google",
        authorize: "https://accounts.google.com/o/oauth2/v2/auth",
        token: "https://oauth2.googleapis.com/token",
        userinfo: "https://openidconnect.googleapis.com/v1/userinfo",
        default_scopes: &["openid", "profile", "email"],
        identity: standard_identity,
    },
    Provider {
        name: "linkedin",
        authorize: "https://www.linkedin.com/oauth/v2/authorization",
        token: "https://www.linkedin.com/oauth/v2/accessToken",
        userinfo: "https://api.linkedin.com/v2/userinfo",
        default_scopes: &["openid", "profile", "email"],
        identity: standard_identity,
    },
    Provider {
        name: "microsoft",
        authorize: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        userinfo: "https://graph.microsoft.com/oidc/userinfo",
        default_scopes: &["openid", "profile", "email"],
        identity: standard_identity,
    },
    Provider {
        name: "twitch",
        authorize: "https://id.twitch.tv/oauth2/authorize",
        token: "https://id.twitch.tv/oauth2/token",
        userinfo: "https://id.twitch.tv/oauth2/userinfo",
        default_scopes: &["openid", "user:read:email"],
        identity: standard_identity,
    },
];

impl Provider {
    /// The provider called `name`.
    pub fn find(name: &str) -> Option<&'static Provider> {
        PROVIDERS.iter().find(|p| p.name == name)
    }

    /// The key of this provider's `--provider-url` override.
    pub fn override_key(&self) -> String {
        format!("oauth-{}", self.name)
    }

    /// The endpoints, moved under the `--provider-url` base when one is set.
    pub fn endpoints(&self, overrides: &HashMap<String, String>) -> Result<Endpoints, String> {
        let base = overrides.get(&self.override_key()).map(String::as_str);
        let place = |url: &str| -> Result<Uri, String> {
            let moved = match base {
                None => url.to_owned(),
                Some(base) => {
                    let path = url
                        .find("://")
                        .and_then(|at| url[at + 3..].find('/').map(|p| &url[at + 3 + p..]))
                        .unwrap_or("/");
                    format!("{}{path}", base.trim_end_matches('/'))
                }
            };
            moved
                .parse()
                .map_err(|_| format!("'{moved}' is not a valid URL"))
        };
        Ok(Endpoints {
            authorization: place(self.authorize)?,
            token: place(self.token)?,
            userinfo: Some(place(self.userinfo)?),
            end_session: None,
            // Every listed provider takes the secret in the form body.
            token_auth: TokenAuth::Post,
        })
    }
}

/// OpenID Connect claims: `sub`, `email`, `name` (else `preferred_username`, `nickname`).
pub(super) fn standard_identity(doc: &Value) -> Option<Identity> {
    let mut identity = keyed(doc, "sub")?;
    if identity.name.is_empty() {
        identity.name = text_field(doc, "preferred_username")
            .or_else(|| text_field(doc, "nickname"))
            .unwrap_or_default();
    }
    Some(identity)
}

/// The user id at `id_key`, `email`, and `name` (else GitHub's `login`).
fn keyed(doc: &Value, id_key: &str) -> Option<Identity> {
    Some(Identity {
        id: text_field(doc, id_key)?,
        email: text_field(doc, "email").unwrap_or_default(),
        name: text_field(doc, "name")
            .or_else(|| text_field(doc, "login"))
            .unwrap_or_default(),
        provider_session: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(provider: &str, doc: Value) -> Identity {
        (Provider::find(provider).unwrap().identity)(&doc).unwrap()
    }

    #[test]
    fn userinfo_documents_map_to_identities() {
        let github = identity(
            "github",
            json!({"id": 583231, "login": "octocat", "name": null, "email": "o@github.test"}),
        );
        assert_eq!(
            (
                github.id.as_str(),
                github.email.as_str(),
                github.name.as_str()
            ),
            ("583231", "o@github.test", "octocat")
        );
        let amazon = identity(
            "amazon",
            json!({"user_id": "amzn1.account.X", "name": "Ada", "email": "a@x.test"}),
        );
        assert_eq!(amazon.id, "amzn1.account.X");
        let google = identity(
            "google",
            json!({"sub": "1098", "email": "g@x.test", "name": "Grace"}),
        );
        assert_eq!(
            (google.id.as_str(), google.name.as_str()),
            ("1098", "Grace")
        );
        let twitch = identity(
            "twitch",
            json!({"sub": "77", "preferred_username": "streamer"}),
        );
        assert_eq!(twitch.name, "streamer");
        assert!((Provider::find("google").unwrap().identity)(&json!({"email": "x"})).is_none());
    }

    #[test]
    fn overrides_move_every_endpoint_keeping_paths() {
        let google = Provider::find("google").unwrap();
        let overrides = HashMap::from([(
            "oauth-google".to_owned(),
            "http://127.0.0.1:9000/idp/".to_owned(),
        )]);
        let moved = google.endpoints(&overrides).unwrap();
        assert_eq!(
            moved.authorization,
            "http://127.0.0.1:9000/idp/o/oauth2/v2/auth"
        );
        assert_eq!(moved.token, "http://127.0.0.1:9000/idp/token");
        assert_eq!(
            moved.userinfo.unwrap(),
            "http://127.0.0.1:9000/idp/v1/userinfo"
        );
        let facebook = Provider::find("facebook").unwrap();
        let real = facebook.endpoints(&HashMap::new()).unwrap();
        assert_eq!(
            real.userinfo.unwrap(),
            "https://graph.facebook.com/me?fields=id,name,email"
        );
        assert!(Provider::find("myspace").is_none());
    }
}
