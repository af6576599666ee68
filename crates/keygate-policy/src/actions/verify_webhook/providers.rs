//! Every provider `verify-webhook` accepts and its signature scheme, as each vendor documents
//! it. Providers sharing a scheme share one entry of the table.

use super::scheme::{
    Digest, Encoding, HmacScheme, Key, Part, Signature, TimeFormat, TimeSource, Timestamp,
};

/// How a provider's requests are verified.
#[derive(Debug, Clone, Copy)]
pub enum Scheme {
    Hmac(HmacScheme),
    /// The header carries the secret itself (GitLab's `X-Gitlab-Token`).
    Token {
        header: &'static str,
    },
    /// ECDSA P-256 with SHA-256 over timestamp + body; the secret is the provider's public key.
    Ecdsa {
        signature: &'static str,
        timestamp: &'static str,
        tolerance: u64,
    },
    /// Mailgun: timestamp, token and signature travel in the body.
    Mailgun {
        tolerance: u64,
    },
    /// Keygate cannot verify this provider; the reason is given at load.
    Unsupported(&'static str),
}

/// A request the provider sends that is not a webhook and is answered on the provider's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// `GET ?crc_token=...`: answer with the token's HMAC.
    TwitterCrc,
    /// A signed `endpoint.url_validation` event: answer with the plain token's HMAC.
    ZoomUrlValidation,
    /// `GET` with `X-GCS-Webhooks-Endpoint-Verification`: echo the header's value.
    WorldlineEcho,
    /// Intent to receive: bad signatures get 401, signed empty event lists 200.
    XeroIntent,
}

/// One provider id.
#[derive(Debug)]
pub struct Provider {
    pub name: &'static str,
    pub scheme: Scheme,
    pub handshake: Option<Handshake>,
}

/// The provider called `name`.
pub fn find(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Replay windows (seconds either side of now) of the timestamped schemes: the vendor's own
/// figure where it gives one, else ngrok's documented default of 180 seconds.
const DEFAULT_TOLERANCE: u64 = 180;
const FIVE_MINUTES: u64 = 300;
const TEN_MINUTES: u64 = 600;

const fn body(
    names: &'static [&'static str],
    prefix: &'static str,
    digest: Digest,
    encoding: Encoding,
) -> Scheme {
    Scheme::Hmac(HmacScheme {
        digest,
        encoding,
        key: Key::Raw,
        signature: Signature::Header {
            names,
            prefix,
            separator: None,
        },
        timestamp: None,
        message: &[Part::Body],
    })
}

/// Several `prefix`ed signatures in one header, separated by commas.
const fn body_list(name: &'static [&'static str], prefix: &'static str) -> Scheme {
    Scheme::Hmac(HmacScheme {
        digest: Digest::Sha256,
        encoding: Encoding::Hex,
        key: Key::Raw,
        signature: Signature::Header {
            names: name,
            prefix,
            separator: Some(','),
        },
        timestamp: None,
        message: &[Part::Body],
    })
}

/// `t=<unix>,v1=<hex>` over `<t>.<body>` (Stripe and those who copied it).
const fn pairs(
    name: &'static str,
    signature: &'static str,
    timestamp: &'static str,
    tolerance: u64,
) -> Scheme {
    Scheme::Hmac(HmacScheme {
        digest: Digest::Sha256,
        encoding: Encoding::Hex,
        key: Key::Raw,
        signature: Signature::Pairs {
            name,
            signature,
            timestamp,
        },
        timestamp: Some(Timestamp {
            source: TimeSource::Pair,
            format: TimeFormat::UnixSeconds,
            tolerance,
        }),
        message: &[Part::Timestamp, Part::Text("."), Part::Body],
    })
}

/// `v0=<hex>` over `v0:<timestamp>:<body>`, the timestamp in its own header (Slack style).
const fn v0(
    signature: &'static [&'static str],
    timestamp: &'static [&'static str],
    tolerance: u64,
) -> Scheme {
    Scheme::Hmac(HmacScheme {
        digest: Digest::Sha256,
        encoding: Encoding::Hex,
        key: Key::Raw,
        signature: Signature::Header {
            names: signature,
            prefix: "v0=",
            separator: None,
        },
        timestamp: Some(Timestamp {
            source: TimeSource::Header(timestamp),
            format: TimeFormat::UnixSeconds,
            tolerance,
        }),
        message: &[
            Part::Text("v0:"),
            Part::Timestamp,
            Part::Text(":"),
            Part::Body,
        ],
    })
}

/// Svix (and Standard Webhooks, whose headers are `webhook-*`): `v1,<base64>` entries over
/// `<id>.<timestamp>.<body>`, keyed by the base64 after `whsec_`.
const SVIX: Scheme = Scheme::Hmac(HmacScheme {
    digest: Digest::Sha256,
    encoding: Encoding::Base64,
    key: Key::Whsec,
    signature: Signature::Header {
        names: &["svix-signature", "webhook-signature"],
        prefix: "v1,",
        separator: Some(' '),
    },
    timestamp: Some(Timestamp {
        source: TimeSource::Header(&["svix-timestamp", "webhook-timestamp"]),
        format: TimeFormat::UnixSeconds,
        tolerance: FIVE_MINUTES,
    }),
    message: &[
        Part::Header(&["svix-id", "webhook-id"]),
        Part::Text("."),
        Part::Timestamp,
        Part::Text("."),
        Part::Body,
    ],
});

/// HMAC-SHA1 (base64) over the URL and the sorted form parameters.
const fn url_and_form(name: &'static [&'static str]) -> Scheme {
    Scheme::Hmac(HmacScheme {
        digest: Digest::Sha1,
        encoding: Encoding::Base64,
        key: Key::Raw,
        signature: Signature::Header {
            names: name,
            prefix: "",
            separator: None,
        },
        timestamp: None,
        message: &[Part::Url, Part::FormParams],
    })
}

const fn timestamped(
    signature: &'static [&'static str],
    prefix: &'static str,
    encoding: Encoding,
    timestamp: Timestamp,
    message: &'static [Part],
) -> Scheme {
    Scheme::Hmac(HmacScheme {
        digest: Digest::Sha256,
        encoding,
        key: Key::Raw,
        signature: Signature::Header {
            names: signature,
            prefix,
            separator: None,
        },
        timestamp: Some(timestamp),
        message,
    })
}

const fn at(header: &'static [&'static str], format: TimeFormat, tolerance: u64) -> Timestamp {
    Timestamp {
        source: TimeSource::Header(header),
        format,
        tolerance,
    }
}

const HUB_SHA256: Scheme = body(
    &["x-hub-signature-256"],
    "sha256=",
    Digest::Sha256,
    Encoding::Hex,
);

const UNDOCUMENTED: Scheme = Scheme::Unsupported(
    "Keygate does not implement this provider's signature scheme yet: verify its webhooks in \
     the application",
);

const fn provider(name: &'static str, scheme: Scheme) -> Provider {
    Provider {
        name,
        scheme,
        handshake: None,
    }
}

const fn with_handshake(name: &'static str, scheme: Scheme, handshake: Handshake) -> Provider {
    Provider {
        name,
        scheme,
        handshake: Some(handshake),
    }
}

use Digest::{Sha1, Sha256, Sha512};
use Encoding::{Base64, Hex};
use TimeFormat::{Iso8601, UnixMillis, UnixSeconds};

/// Every provider id of ngrok's list, in its order.
pub static PROVIDERS: &[Provider] = &[
    provider(
        "aftership",
        body(&["aftership-hmac-sha256"], "", Sha256, Base64),
    ),
    provider(
        "airship",
        timestamped(
            &["x-ua-signature"],
            "",
            Hex,
            at(&["x-ua-timestamp"], UnixSeconds, DEFAULT_TOLERANCE),
            &[Part::Timestamp, Part::Text(":"), Part::Body],
        ),
    ),
    provider("alchemy", body(&["x-alchemy-signature"], "", Sha256, Hex)),
    provider(
        "sns",
        Scheme::Unsupported(
            "AWS SNS messages are signed with an X.509 certificate that has to be downloaded \
             from amazonaws.com for each signing key, and Keygate makes no such requests: \
             verify SNS messages in the application",
        ),
    ),
    provider(
        "autodesk",
        body(&["x-adsk-signature"], "sha1hash=", Sha1, Hex),
    ),
    provider(
        "bitbucket",
        body(&["x-hub-signature"], "sha256=", Sha256, Hex),
    ),
    provider("bolt", body(&["x-bolt-hmac-sha256"], "", Sha256, Base64)),
    provider(
        "box",
        timestamped(
            &["box-signature-primary", "box-signature-secondary"],
            "",
            Base64,
            at(&["box-delivery-timestamp"], Iso8601, TEN_MINUTES),
            &[Part::Body, Part::Timestamp],
        ),
    ),
    provider("brex", SVIX),
    provider(
        "buildkite",
        pairs(
            "x-buildkite-signature",
            "signature",
            "timestamp",
            DEFAULT_TOLERANCE,
        ),
    ),
    provider(
        "calendly",
        pairs("calendly-webhook-signature", "v1", "t", DEFAULT_TOLERANCE),
    ),
    provider("castle", body(&["x-castle-signature"], "", Sha256, Base64)),
    provider(
        "chargify",
        body(
            &["x-chargify-webhook-signature-hmac-sha-256"],
            "",
            Sha256,
            Hex,
        ),
    ),
    provider("circleci", body_list(&["circleci-signature"], "v1=")),
    provider(
        "clearbit",
        body(&["x-request-signature"], "sha1=", Sha1, Hex),
    ),
    provider("clerk", SVIX),
    provider(
        "coinbase",
        body(&["x-cc-webhook-signature"], "", Sha256, Hex),
    ),
    provider(
        "contentful",
        Scheme::Unsupported(
            "Contentful signs a canonical form of the request over a header list it chooses \
             per webhook, which Keygate does not implement: verify it in the application",
        ),
    ),
    provider(
        "docusign",
        // One header per active HMAC key (DocuSign allows several at once).
        body(
            &[
                "x-docusign-signature-1",
                "x-docusign-signature-2",
                "x-docusign-signature-3",
                "x-docusign-signature-4",
                "x-docusign-signature-5",
            ],
            "",
            Sha256,
            Base64,
        ),
    ),
    provider("dropbox", body(&["x-dropbox-signature"], "", Sha256, Hex)),
    provider("facebook_graph_api", HUB_SHA256),
    provider("facebook_messenger", HUB_SHA256),
    provider(
        "frameio",
        v0(
            &["x-frameio-signature"],
            &["x-frameio-request-timestamp"],
            FIVE_MINUTES,
        ),
    ),
    provider("github", HUB_SHA256),
    provider(
        "gitlab",
        Scheme::Token {
            header: "x-gitlab-token",
        },
    ),
    provider("go1", UNDOCUMENTED),
    provider(
        "heroku",
        body(&["heroku-webhook-hmac-sha256"], "", Sha256, Base64),
    ),
    provider("hostedhooks", UNDOCUMENTED),
    provider(
        "hubspot",
        // Signature v3; v1 and v2 are HubSpot's retired schemes.
        timestamped(
            &["x-hubspot-signature-v3"],
            "",
            Base64,
            at(&["x-hubspot-request-timestamp"], UnixMillis, FIVE_MINUTES),
            &[
                Part::Method,
                Part::UrlReservedDecoded,
                Part::Body,
                Part::Timestamp,
            ],
        ),
    ),
    provider("graphcms", UNDOCUMENTED),
    provider("instagram", HUB_SHA256),
    provider("intercom", body(&["x-hub-signature"], "sha1=", Sha1, Hex)),
    provider("jira", body(&["x-hub-signature"], "sha256=", Sha256, Hex)),
    provider("launch_darkly", body(&["x-ld-signature"], "", Sha256, Hex)),
    provider("linear", body(&["linear-signature"], "", Sha256, Hex)),
    // Mailchimp Transactional (Mandrill): Mailchimp Marketing webhooks are not signed.
    provider("mailchimp", url_and_form(&["x-mandrill-signature"])),
    provider(
        "mailgun",
        Scheme::Mailgun {
            tolerance: DEFAULT_TOLERANCE,
        },
    ),
    provider(
        "microsoft_teams",
        Scheme::Hmac(HmacScheme {
            digest: Digest::Sha256,
            encoding: Encoding::Base64,
            key: Key::Base64,
            signature: Signature::Header {
                names: &["authorization"],
                prefix: "HMAC ",
                separator: None,
            },
            timestamp: None,
            message: &[Part::Body],
        }),
    ),
    provider("modern_treasury", body(&["x-signature"], "", Sha256, Hex)),
    provider("mongodb", body(&["x-mms-signature"], "", Sha1, Base64)),
    provider("mux", pairs("mux-signature", "v1", "t", FIVE_MINUTES)),
    provider(
        "orb",
        timestamped(
            &["x-orb-signature"],
            "v1=",
            Hex,
            at(&["x-orb-timestamp"], Iso8601, FIVE_MINUTES),
            &[
                Part::Text("v1:"),
                Part::Timestamp,
                Part::Text(":"),
                Part::Body,
            ],
        ),
    ),
    provider("orbit", UNDOCUMENTED),
    provider("pagerduty", body_list(&["x-pagerduty-signature"], "v1=")),
    provider("pinwheel", UNDOCUMENTED),
    provider(
        "plivo",
        // Signature V2: the URL without its query, then the nonce.
        Scheme::Hmac(HmacScheme {
            digest: Digest::Sha256,
            encoding: Encoding::Base64,
            key: Key::Raw,
            signature: Signature::Header {
                names: &["x-plivo-signature-v2"],
                prefix: "",
                separator: None,
            },
            timestamp: None,
            message: &[
                Part::UrlWithoutQuery,
                Part::Header(&["x-plivo-signature-v2-nonce"]),
            ],
        }),
    ),
    provider("pusher", body(&["x-pusher-signature"], "", Sha256, Hex)),
    provider(
        "sendgrid",
        Scheme::Ecdsa {
            signature: "x-twilio-email-event-webhook-signature",
            timestamp: "x-twilio-email-event-webhook-timestamp",
            tolerance: DEFAULT_TOLERANCE,
        },
    ),
    provider("sentry", body(&["sentry-hook-signature"], "", Sha256, Hex)),
    provider(
        "shopify",
        body(&["x-shopify-hmac-sha256"], "", Sha256, Base64),
    ),
    provider("signal_sciences", UNDOCUMENTED),
    provider(
        "slack",
        v0(
            &["x-slack-signature"],
            &["x-slack-request-timestamp"],
            FIVE_MINUTES,
        ),
    ),
    provider(
        "sonatype",
        body(&["x-nexus-webhook-signature"], "", Sha1, Hex),
    ),
    provider(
        "square",
        Scheme::Hmac(HmacScheme {
            digest: Digest::Sha256,
            encoding: Encoding::Base64,
            key: Key::Raw,
            signature: Signature::Header {
                names: &["x-square-hmacsha256-signature"],
                prefix: "",
                separator: None,
            },
            timestamp: None,
            message: &[Part::Url, Part::Body],
        }),
    ),
    provider("stripe", pairs("stripe-signature", "v1", "t", FIVE_MINUTES)),
    provider("svix", SVIX),
    provider(
        "terraform",
        body(&["x-tfe-notification-signature"], "", Sha512, Hex),
    ),
    provider(
        "tiktok",
        pairs("tiktok-signature", "s", "t", DEFAULT_TOLERANCE),
    ),
    provider("trendmicro_conformity", UNDOCUMENTED),
    provider("twilio", url_and_form(&["x-twilio-signature"])),
    with_handshake(
        "twitter",
        body(&["x-twitter-webhooks-signature"], "sha256=", Sha256, Base64),
        Handshake::TwitterCrc,
    ),
    provider(
        "typeform",
        body(&["typeform-signature"], "sha256=", Sha256, Base64),
    ),
    provider("vmware", UNDOCUMENTED),
    provider("webex", body(&["x-spark-signature"], "", Sha1, Hex)),
    provider("whatsapp", HUB_SHA256),
    with_handshake(
        "worldline",
        body(&["x-gcs-signature"], "", Sha256, Base64),
        Handshake::WorldlineEcho,
    ),
    with_handshake(
        "xero",
        body(&["x-xero-signature"], "", Sha256, Base64),
        Handshake::XeroIntent,
    ),
    provider(
        "zendesk",
        timestamped(
            &["x-zendesk-webhook-signature"],
            "",
            Base64,
            at(
                &["x-zendesk-webhook-signature-timestamp"],
                Iso8601,
                DEFAULT_TOLERANCE,
            ),
            &[Part::Timestamp, Part::Body],
        ),
    ),
    with_handshake(
        "zoom",
        v0(
            &["x-zm-signature"],
            &["x-zm-request-timestamp"],
            DEFAULT_TOLERANCE,
        ),
        Handshake::ZoomUrlValidation,
    ),
];
