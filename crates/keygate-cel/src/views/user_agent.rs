//! `req.user_agent.*`: what a `User-Agent` header says about the client: browser or bot name and
//! version, operating system and version, device, and the mobile / tablet / desktop / bot flags.
//!
//! The header is split into product tokens (`Chrome/120.0`) and the `;`-separated parts of its
//! parenthesised comments (`Windows NT 10.0`, `GPTBot/1.1`, `+https://openai.com/gptbot`). Bots
//! are recognised first (a product whose name says bot / crawler / spider, a few well-known
//! names, or a `http(s)://` link in the header), then browsers by their distinguishing token, most
//! specific first (Edge and Opera also send `Chrome` and `Safari`), then the first product that
//! is not a compatibility token (`curl/8.4.0`).

/// The parsed fields; strings are `''` when the header does not say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct UserAgent {
    pub name: String,
    pub version: String,
    pub os: String,
    pub os_version: String,
    pub device: String,
    pub url: String,
    pub is_mobile: bool,
    pub is_tablet: bool,
    pub is_desktop: bool,
    pub is_bot: bool,
}

/// Products every browser sends for compatibility; never the client's own name.
const GENERIC: &[&str] = &[
    "Mozilla",
    "AppleWebKit",
    "KHTML",
    "Gecko",
    "like Gecko",
    "Chrome",
    "Safari",
    "Version",
    "Mobile",
    "compatible",
];

/// Bots whose product name does not say so.
const KNOWN_BOTS: &[&str] = &[
    "ChatGPT-User",
    "facebookexternalhit",
    "Slurp",
    "Google-Extended",
    "Claude-Web",
    "anthropic-ai",
    "Bytespider",
];

/// Browser tokens, most specific first, and the name each stands for.
const BROWSERS: &[(&str, &str)] = &[
    ("EdgiOS", "Edge"),
    ("EdgA", "Edge"),
    ("Edg", "Edge"),
    ("Edge", "Edge"),
    ("OPR", "Opera"),
    ("OPiOS", "Opera"),
    ("Opera", "Opera"),
    ("SamsungBrowser", "Samsung Internet"),
    ("YaBrowser", "Yandex Browser"),
    ("Vivaldi", "Vivaldi"),
    ("HeadlessChrome", "Headless Chrome"),
    ("CriOS", "Chrome"),
    ("FxiOS", "Firefox"),
    ("Firefox", "Firefox"),
    ("Chrome", "Chrome"),
    ("Chromium", "Chromium"),
];

/// One piece of the header: a `name/version` product (version may be empty) or a comment part.
struct Token<'a> {
    name: &'a str,
    version: &'a str,
    in_comment: bool,
}

impl UserAgent {
    /// Parses a `User-Agent` header value.
    pub(crate) fn parse(header: &str) -> Self {
        let tokens = tokenize(header);
        let mut ua = Self {
            url: link(&tokens).unwrap_or_default().to_owned(),
            ..Self::default()
        };
        ua.detect_os(&tokens, header);
        ua.detect_client(&tokens);
        ua.is_bot = ua.is_bot || !ua.url.is_empty();
        if ua.is_tablet {
            ua.is_mobile = false;
        }
        let desktop_os = matches!(ua.os.as_str(), "Windows" | "macOS" | "Linux" | "ChromeOS");
        ua.is_desktop = desktop_os && !ua.is_mobile && !ua.is_tablet && !ua.is_bot;
        ua
    }

    fn detect_os(&mut self, tokens: &[Token<'_>], header: &str) {
        let comment = |prefix: &str| {
            tokens
                .iter()
                .filter(|t| t.in_comment)
                .find_map(|t| t.name.strip_prefix(prefix))
        };
        let mobile_marker = tokens.iter().any(|t| t.name == "Mobile");
        if let Some(rest) = comment("Android") {
            self.os = "Android".to_owned();
            self.os_version = rest.trim().to_owned();
            self.device = android_device(tokens);
            // Android tablets leave out the `Mobile` marker phones send.
            self.is_mobile = mobile_marker;
            self.is_tablet = !mobile_marker || header.to_ascii_lowercase().contains("tablet");
        } else if let Some(device) = ["iPhone", "iPad", "iPod"]
            .into_iter()
            .find(|d| tokens.iter().any(|t| t.in_comment && t.name.starts_with(d)))
        {
            self.os = "iOS".to_owned();
            self.os_version = apple_version(tokens, " OS ");
            self.device = device.to_owned();
            self.is_tablet = device == "iPad";
            self.is_mobile = !self.is_tablet;
        } else if let Some(version) = comment("Windows NT ") {
            self.os = "Windows".to_owned();
            self.os_version = version.trim().to_owned();
        } else if comment("Macintosh").is_some() {
            self.os = "macOS".to_owned();
            self.os_version = apple_version(tokens, "Mac OS X ");
        } else if let Some(rest) = comment("CrOS") {
            self.os = "ChromeOS".to_owned();
            // `CrOS x86_64 14541.0.0`: the architecture, then the version.
            self.os_version = rest.split_whitespace().nth(1).unwrap_or("").to_owned();
        } else if tokens
            .iter()
            .any(|t| t.in_comment && t.name.contains("Linux"))
        {
            self.os = "Linux".to_owned();
        }
    }

    fn detect_client(&mut self, tokens: &[Token<'_>]) {
        let is_bot_name = |name: &str| {
            let lower = name.to_ascii_lowercase();
            ["bot", "crawler", "spider"]
                .iter()
                .any(|w| lower.contains(w))
                || KNOWN_BOTS.iter().any(|b| b.eq_ignore_ascii_case(name))
        };
        let products = || {
            tokens
                .iter()
                .filter(|t| !t.name.starts_with("http") && !t.name.starts_with('+'))
        };
        if let Some(bot) = products().find(|t| is_bot_name(t.name)) {
            self.set_client(bot.name, bot.version);
            self.is_bot = true;
            return;
        }
        let version_of = |name: &str| {
            tokens
                .iter()
                .find(|t| !t.in_comment && t.name == name)
                .map(|t| t.version)
        };
        for (token, name) in BROWSERS {
            if let Some(version) = version_of(token) {
                self.set_client(name, version);
                return;
            }
        }
        if let Some(version) = tokens.iter().find_map(|t| t.name.strip_prefix("MSIE ")) {
            self.set_client("Internet Explorer", version.trim());
            return;
        }
        if tokens.iter().any(|t| t.name.starts_with("Trident/")) {
            let version = tokens
                .iter()
                .find_map(|t| t.name.strip_prefix("rv:"))
                .unwrap_or("");
            self.set_client("Internet Explorer", version);
            return;
        }
        if version_of("Safari").is_some() {
            self.set_client("Safari", version_of("Version").unwrap_or(""));
            return;
        }
        let own = products().find(|t| !t.in_comment && !GENERIC.contains(&t.name));
        // A client that names nobody else but links to itself (`ChatGPT-User`) is in a comment.
        let own = own
            .or_else(|| products().find(|t| !t.version.is_empty() && !GENERIC.contains(&t.name)));
        if let Some(own) = own {
            self.set_client(own.name, own.version);
        }
    }

    fn set_client(&mut self, name: &str, version: &str) {
        self.name = name.to_owned();
        self.version = version.to_owned();
    }
}

/// Products and comment parts in header order. A `;` outside parentheses also separates parts
/// (some bots write `...(KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://...`).
fn tokenize(header: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = header;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace() && c != ';') {
        rest = &rest[start..];
        if let Some(inner) = rest.strip_prefix('(') {
            let end = inner.find(')').unwrap_or(inner.len());
            for part in inner[..end].split([';', ',']) {
                push(&mut tokens, part.trim(), true);
            }
            rest = inner.get(end + 1..).unwrap_or("");
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == ';' || c == '(')
                .unwrap_or(rest.len());
            push(&mut tokens, &rest[..end], false);
            rest = &rest[end..];
        }
    }
    tokens
}

fn push<'a>(tokens: &mut Vec<Token<'a>>, part: &'a str, in_comment: bool) {
    if part.is_empty() {
        return;
    }
    let is_link = part.starts_with("http") || part.starts_with("+http");
    let (name, version) = match part.split_once('/') {
        Some((name, version)) if !is_link => (name, version),
        _ => (part, ""),
    };
    tokens.push(Token {
        name,
        version,
        in_comment,
    });
}

/// The first `http(s)://` link, without the `+` bots put before it.
fn link<'a>(tokens: &[Token<'a>]) -> Option<&'a str> {
    tokens
        .iter()
        .map(|t| t.name.trim_start_matches('+'))
        .find(|name| name.starts_with("http://") || name.starts_with("https://"))
}

/// `10_12_6` after `marker` (`Mac OS X `, ` OS `) in a comment part, as `10.12.6`.
fn apple_version(tokens: &[Token<'_>], marker: &str) -> String {
    tokens
        .iter()
        .filter(|t| t.in_comment)
        .find_map(|t| t.name.split_once(marker).map(|(_, v)| v))
        .and_then(|v| v.split_whitespace().next())
        .map(|v| v.replace('_', "."))
        .unwrap_or_default()
}

/// The model an Android browser names in its comment: the part that ends in `Build/...`, or
/// else the part after the Android version (`Linux; Android 13; Pixel 7`).
fn android_device(tokens: &[Token<'_>]) -> String {
    let comment: Vec<&Token<'_>> = tokens.iter().filter(|t| t.in_comment).collect();
    if let Some(model) = comment
        .iter()
        .find_map(|t| t.name.split_once(" Build").map(|(model, _)| model))
    {
        return model.trim().to_owned();
    }
    comment
        .iter()
        .position(|t| t.name.starts_with("Android"))
        .and_then(|i| comment.get(i + 1))
        .filter(|t| t.version.is_empty() && !t.name.contains(':'))
        .map(|t| t.name.to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::UserAgent;

    /// `(header, name, version, os, os_version, device, [mobile, tablet, desktop, bot])`.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        [bool; 4],
    );

    const CASES: &[Case] = &[
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_6) AppleWebKit/603.3.8 (KHTML, like \
             Gecko) Version/10.1.2 Safari/603.3.8",
            "Safari",
            "10.1.2",
            "macOS",
            "10.12.6",
            "",
            [false, false, true, false],
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge",
            "120.0.2210.91",
            "Windows",
            "10.0",
            "",
            [false, false, true, false],
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox",
            "121.0",
            "Linux",
            "",
            "",
            [false, false, true, false],
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) CriOS/119.0.6045.169 Mobile/15E148 Safari/604.1",
            "Chrome",
            "119.0.6045.169",
            "iOS",
            "16.5",
            "iPhone",
            [true, false, false, false],
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
             Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Safari",
            "17.1",
            "iOS",
            "17.1",
            "iPad",
            [false, true, false, false],
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014) \
             AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
            "Chrome",
            "119.0.0.0",
            "Android",
            "13",
            "SM-S911B",
            [true, false, false, false],
        ),
        (
            "Mozilla/5.0 (Linux; Android 12; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/118.0.0.0 Safari/537.36",
            "Chrome",
            "118.0.0.0",
            "Android",
            "12",
            "SM-X700",
            [false, true, false, false],
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; \
             +https://openai.com/gptbot)",
            "GPTBot",
            "1.1",
            "",
            "",
            "",
            [false, false, false, true],
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; \
             +https://openai.com/bot",
            "ChatGPT-User",
            "1.0",
            "",
            "",
            "",
            [false, false, false, true],
        ),
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 \
             (KHTML, like Gecko) Chrome/121.0.6167.139 Mobile Safari/537.36 (compatible; \
             Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
            "2.1",
            "Android",
            "6.0.1",
            "Nexus 5X",
            [true, false, false, true],
        ),
        (
            "curl/8.4.0",
            "curl",
            "8.4.0",
            "",
            "",
            "",
            [false, false, false, false],
        ),
        ("", "", "", "", "", "", [false, false, false, false]),
    ];

    #[test]
    fn recognises_browsers_systems_devices_and_bots() {
        for (header, name, version, os, os_version, device, flags) in CASES {
            let ua = UserAgent::parse(header);
            let got = (
                ua.name.as_str(),
                ua.version.as_str(),
                ua.os.as_str(),
                ua.os_version.as_str(),
                ua.device.as_str(),
                [ua.is_mobile, ua.is_tablet, ua.is_desktop, ua.is_bot],
            );
            assert_eq!(
                got,
                (*name, *version, *os, *os_version, *device, *flags),
                "{header}"
            );
        }
    }

    #[test]
    fn a_link_in_the_header_is_the_url_and_marks_a_bot() {
        let ua = UserAgent::parse(
            "Mozilla/5.0 (compatible; Example-Fetcher/2.0; +https://fetch.example/about)",
        );
        assert_eq!(ua.url, "https://fetch.example/about");
        assert_eq!(
            (ua.name.as_str(), ua.version.as_str()),
            ("Example-Fetcher", "2.0")
        );
        assert!(ua.is_bot);
        assert_eq!(UserAgent::parse("curl/8.4.0").url, "");
    }
}
