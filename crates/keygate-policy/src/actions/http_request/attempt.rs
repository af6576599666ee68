//! One attempt of a side request: send, follow redirects up to the limit, read the answer's
//! body up to its cap.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, LOCATION, PROXY_AUTHORIZATION};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use keygate_http::HttpClient;
use url::Url;

use super::Planned;
use crate::body::{empty, full};
use crate::error::ErrorCode;

/// The largest answer body read (ngrok's limit); a larger one fails the attempt.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The answer of an attempt (after any redirects).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The address the answer came from when the final URL's host is an IP literal (the shared
    /// client does not report the address a name resolved to).
    pub resolved_ip: Option<IpAddr>,
}

/// Why an attempt (or the whole action) failed: a code from the error table and a message safe
/// for clients (it names the target's origin, never its path, query or headers).
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: String) -> Self {
        Self { code, message }
    }

    /// The action's `timeout` ran out.
    pub fn timeout(after: Duration) -> Self {
        Self::new(
            ErrorCode::SideRequestTimeout,
            format!("no answer within {}s", after.as_secs_f64()),
        )
    }

    /// Nothing is sent offline (`keygate policy test`).
    pub fn offline() -> Self {
        Self::new(
            ErrorCode::SideRequestFailed,
            "not sent: side requests are not made offline (keygate policy test)".to_owned(),
        )
    }

    /// The rendered URL is no valid target.
    pub fn invalid_url(message: &str) -> Self {
        Self::new(ErrorCode::SideRequestFailed, message.to_owned())
    }
}

/// One attempt and how long it took.
pub struct Attempt {
    pub outcome: Result<Answer, Failure>,
    pub time: Duration,
}

impl Attempt {
    pub fn new(outcome: Result<Answer, Failure>, time: Duration) -> Self {
        Self { outcome, time }
    }

    /// An attempt that could not start.
    pub fn failed(failure: Failure) -> Self {
        Self::new(Err(failure), Duration::ZERO)
    }
}

/// Sends `planned` to `url`, following at most `max_redirects` redirects (none when 0: the 3xx
/// is the answer).
pub async fn send(
    http: &HttpClient,
    planned: &Planned,
    url: &Url,
    max_redirects: u32,
) -> Result<Answer, Failure> {
    let mut method = planned.method.clone();
    let mut body = planned.body.clone();
    let mut headers = planned.headers.clone();
    let mut url = url.clone();
    let mut followed = 0;
    loop {
        let response = http
            .send(request(&method, &url, &headers, body.as_deref())?)
            .await
            .map_err(|err| failed(&url, &err.with_causes()))?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok());
        if let (true, Some(location)) = (status.is_redirection() && max_redirects > 0, location) {
            if followed == max_redirects {
                return Err(Failure::new(
                    ErrorCode::SideRequestRedirects,
                    format!("more than {max_redirects} redirects from {}", origin(&url)),
                ));
            }
            let next = url
                .join(location)
                .ok()
                .filter(|next| matches!(next.scheme(), "http" | "https"))
                .ok_or_else(|| failed(&url, "a redirect to an invalid or non-HTTP location"))?;
            // As browsers and curl do: 303 (and 301/302 after a POST) continue as GET.
            if status == StatusCode::SEE_OTHER
                || (method == Method::POST
                    && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
            {
                method = Method::GET;
                body = None;
            }
            // Credentials meant for one origin never follow a redirect to another.
            if next.origin() != url.origin() {
                for name in [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE] {
                    headers.remove(name);
                }
            }
            followed += 1;
            url = next;
            continue;
        }
        let (head, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<LengthLimitError>() {
                    Failure::new(
                        ErrorCode::SideRequestTooLarge,
                        format!(
                            "the answer of {} is larger than {} KiB",
                            origin(&url),
                            MAX_BODY_BYTES / 1024
                        ),
                    )
                } else {
                    failed(&url, &format!("reading the answer failed: {err}"))
                }
            })?
            .to_bytes();
        return Ok(Answer {
            status,
            headers: head.headers,
            body,
            resolved_ip: match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(ip.into()),
                Some(url::Host::Ipv6(ip)) => Some(ip.into()),
                _ => None,
            },
        });
    }
}

fn request(
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    body: Option<&str>,
) -> Result<Request<crate::body::Body>, Failure> {
    let body = match body {
        Some(text) => full(text.to_owned()),
        None => empty(),
    };
    let mut request = Request::builder()
        .method(method.clone())
        .uri(url.as_str())
        .body(body)
        .map_err(|err| failed(url, &format!("cannot build the request: {err}")))?;
    *request.headers_mut() = headers.clone();
    Ok(request)
}

fn failed(url: &Url, detail: &str) -> Failure {
    Failure::new(
        ErrorCode::SideRequestFailed,
        format!("request to {} failed: {detail}", origin(url)),
    )
}

/// `scheme://host[:port]`: what messages may show of a target.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}
