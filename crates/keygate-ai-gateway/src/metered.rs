//! The response body handed to the client: upstream bytes forwarded frame by frame as they
//! arrive, with usage read on the way (SSE events or a JSON body), the gateway-added usage
//! chunk dropped, and an idle timeout between chunks. Dropping it (client gone) drops the
//! upstream body, which cancels the upstream request. A body that breaks off (reset, closed,
//! idle, or an event stream without its final event) is recorded in [`Usage::broken`]; the
//! client's copy then ends too.
//!
//! Usage the provider does not report is estimated with the answering model's [`Tokenizer`]: the
//! input from the client's request, the output from the generated text that passed
//! ([`Usage::estimated`] is then set). A response that did not complete is charged at least the
//! output that passed, whatever the provider said. Clients that read the final usage from the
//! stream get the estimate there: a usage chunk before `data: [DONE]` (chat and text completions
//! that asked for one), or the usage filled into `message_delta` / `response.completed`.
//!
//! With an [`Allowance`], a stream's output past what is granted waits until more is granted;
//! when none is left the stream ends with an error event in the surface's format.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use keygate_ai::{
    error_event, fill_usage_event, Candidate, InputEstimate, MetricsStore, OutputEstimate,
    SseScanner, Surface, TokenUsage, Tokenizer,
};
use keygate_http::{Body, BoxError};
use tokio::time::{sleep, Instant, Sleep};

use crate::allowance::{Allowance, Exhausted};
use crate::upstream::BoxFuture;
use crate::usage::{BrokenStream, StreamFailure, Usage};

/// Largest JSON body kept to read its `usage`.
const MAX_JSON_SCAN: usize = 8 << 20;

/// Output tokens asked of an [`Allowance`] at a time.
pub const ALLOWANCE_STEP: u64 = 256;

/// How the body is read for usage.
pub enum Scan {
    /// `text/event-stream`.
    Sse(SseScanner),
    /// A JSON body, read when the body is dropped (after its last bytes went to the client).
    Json(JsonChunks),
    /// Anything else.
    Nothing,
}

/// The chunks of a JSON body, shared with the client's copy rather than copied, up to
/// [`MAX_JSON_SCAN`] bytes.
pub struct JsonChunks {
    chunks: Vec<Bytes>,
    len: usize,
    surface: Surface,
}

impl JsonChunks {
    fn push(&mut self, chunk: &Bytes) {
        if self.len + chunk.len() <= MAX_JSON_SCAN {
            self.len += chunk.len();
            self.chunks.push(chunk.clone());
        }
    }

    fn body(&self) -> Cow<'_, [u8]> {
        match self.chunks.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(one),
            many => Cow::Owned(many.concat()),
        }
    }
}

impl Scan {
    /// The scan mode for a response content type on `surface`; `strip_usage_chunk` when the
    /// gateway added `include_usage` itself.
    pub fn for_content_type(content_type: &str, surface: Surface, strip_usage_chunk: bool) -> Scan {
        if content_type.starts_with("text/event-stream") {
            Scan::Sse(SseScanner::new(strip_usage_chunk).with_final_event(surface.final_event()))
        } else if content_type.starts_with("application/json") {
            Scan::Json(JsonChunks {
                chunks: Vec::new(),
                len: 0,
                surface,
            })
        } else {
            Scan::Nothing
        }
    }

    fn push(&mut self, chunk: Bytes) -> Bytes {
        match self {
            Scan::Sse(scanner) => scanner.push(chunk),
            Scan::Json(json) => {
                json.push(&chunk);
                chunk
            }
            Scan::Nothing => chunk,
        }
    }
}

/// A stream's output budget: what is granted so far, and a chunk held while more is asked for.
struct Budget {
    allowance: Arc<dyn Allowance>,
    granted: u64,
    surface: Surface,
    held: Option<Held>,
}

/// A chunk that would pass the grant, and the request for more it waits for.
struct Held {
    out: Bytes,
    asked: Asked,
}

/// A pending grant. The body must be `Sync`; the mutex makes it so and is never locked, since
/// the body polls it through `&mut` (`Mutex::get_mut`).
type Asked = Mutex<BoxFuture<'static, Result<u64, Exhausted>>>;

/// A metered, idle-bounded response body.
pub struct MeteredBody {
    /// The first chunk, already read while deciding whether the attempt succeeded.
    first: Option<Bytes>,
    inner: Body,
    scan: Scan,
    usage: Arc<Usage>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    finished: bool,
    /// The input estimate of the client's request, for a provider that reports none.
    input_estimate: Option<InputEstimate>,
    /// How the answering model's tokens are counted.
    tokenizer: Tokenizer,
    budget: Option<Budget>,
    /// The client asked for a usage chunk: the model to name in one made from the estimate
    /// when the provider sends none.
    usage_fill: Option<UsageFill>,
    /// The provider and model that answered: a complete stream teaches the provider whether it
    /// reports usage, and the token metrics are theirs.
    answered_by: Option<Candidate>,
    /// Where the final usage goes for `m.metrics`.
    token_metrics: Option<&'static MetricsStore>,
}

/// What a usage chunk made by the gateway says besides the counts.
pub struct UsageFill {
    /// `chat.completion.chunk` or `text_completion`.
    pub object: &'static str,
    pub model: String,
}

impl MeteredBody {
    /// Wraps `inner`, whose first data chunk (if any) was `first`.
    pub fn new(
        first: Option<Bytes>,
        inner: Body,
        scan: Scan,
        usage: Arc<Usage>,
        idle: Duration,
    ) -> Self {
        Self {
            first,
            inner,
            scan,
            usage,
            idle,
            timer: Box::pin(sleep(idle)),
            finished: false,
            input_estimate: None,
            tokenizer: Tokenizer::Heuristic,
            budget: None,
            usage_fill: None,
            answered_by: None,
            token_metrics: None,
        }
    }

    /// The candidate that answered: once complete, the stream notes in its provider whether it
    /// carried usage (`Provider::stream_usage`).
    pub fn answered_by(mut self, candidate: Candidate) -> Self {
        self.answered_by = Some(candidate);
        self
    }

    /// Adds the final usage to `metrics` for the candidate that answered
    /// (`m.metrics.*.token`).
    pub fn with_token_metrics(mut self, metrics: &'static MetricsStore) -> Self {
        self.token_metrics = Some(metrics);
        self
    }

    /// When the client asked for usage (`stream_options.include_usage`) and the stream ends
    /// without any, adds a usage chunk of the estimate before `data: [DONE]`.
    pub fn with_usage_fill(mut self, fill: UsageFill) -> Self {
        self.usage_fill = Some(fill);
        self
    }

    /// The input tokens to count when the provider reports none: the request's estimate.
    pub fn with_input_estimate(mut self, estimate: InputEstimate) -> Self {
        self.input_estimate = Some(estimate);
        self
    }

    /// Counts output the provider does not report with `tokenizer` (the heuristic by default).
    pub fn counting_with(mut self, tokenizer: Tokenizer) -> Self {
        self.tokenizer = tokenizer;
        self
    }

    /// Also estimates a stream's output as it passes (for usage the provider may omit), holding
    /// Messages and Responses events whole so those that carry usage can carry the estimate when
    /// the provider left it out.
    pub fn estimating_output(self, surface: Surface) -> Self {
        self.estimating(surface, false)
    }

    /// [`Self::estimating_output`]; `running`: the count is read after every chunk.
    fn estimating(mut self, surface: Surface, running: bool) -> Self {
        let mut output = OutputEstimate::for_stream(surface, self.tokenizer);
        if running {
            output = output.running();
        }
        self.scan = match std::mem::replace(&mut self.scan, Scan::Nothing) {
            Scan::Sse(scanner) => Scan::Sse(
                scanner
                    .with_output_estimate(output)
                    .holding_usage_events(surface),
            ),
            other => other,
        };
        self
    }

    /// Holds a stream's output past what `allowance` granted until it grants more.
    pub fn with_allowance(mut self, allowance: Arc<dyn Allowance>, surface: Surface) -> Self {
        if matches!(self.scan, Scan::Sse(_)) {
            // The grant is checked against the output estimate as it grows.
            self = self.estimating(surface, true);
            self.budget = Some(Budget {
                granted: allowance.granted(),
                allowance,
                surface,
                held: None,
            });
        }
        self
    }

    /// Ends the body and returns the bytes a stream still holds back; a stream's usage is known
    /// now, a JSON body's is read on drop.
    fn record(&mut self, end: End) -> Bytes {
        let complete = matches!(end, End::Complete);
        let (rest, events, unfinished, error_event) = match &mut self.scan {
            Scan::Sse(scanner) => {
                let rest = scanner.finish();
                let reported = scanner.usage();
                let complete = complete && scanner.saw_final_event();
                // Counted only when needed: a BPE count may load its vocabulary.
                let passed = if output_needed(reported, complete) {
                    scanner.output_estimate()
                } else {
                    0
                };
                if let Some(candidate) = self.answered_by.as_ref().filter(|_| complete) {
                    candidate
                        .provider
                        .stream_usage
                        .learn(reported.output.is_some());
                }
                let (events, unfinished) = (scanner.events(), !scanner.saw_final_event());
                let error_event = scanner.saw_error_event();
                self.settle_usage(reported, complete, || passed);
                (rest, events, unfinished, error_event)
            }
            Scan::Json(_) | Scan::Nothing => (Bytes::new(), 0, false, false),
        };
        self.usage.complete.store(complete, Ordering::Relaxed);
        // An error event names the failure, however the stream ended after it (SDKs stop reading
        // at the error, so the client often goes away first).
        let cause = match end {
            _ if error_event => Some(StreamFailure::ErrorEvent),
            End::Complete if unfinished => Some(StreamFailure::Unfinished),
            End::Complete | End::Abandoned => None,
            End::Broken(cause) => Some(cause),
        };
        if let Some(cause) = cause {
            let _ = self.usage.broken.set(BrokenStream { cause, events });
        }
        self.finished = true;
        rest
    }

    /// Records the final usage: the provider's figures, completed by estimates where it reported
    /// none and, for a response that did not complete, at least the output that passed.
    fn settle_usage(&self, reported: TokenUsage, complete: bool, passed: impl FnOnce() -> u64) {
        let mut usage = reported;
        let mut estimated = false;
        if let (None, Some(estimate)) = (usage.input, &self.input_estimate) {
            usage.input = Some(estimate.tokens());
            estimated = true;
        }
        if output_needed(usage, complete) {
            let passed = passed();
            if usage.output.is_none_or(|reported| reported < passed) {
                usage.output = Some(passed);
                estimated = true;
            }
        }
        // A translation that made the client's usage up has marked it already.
        let estimated = estimated || self.usage.estimated.load(Ordering::Relaxed);
        self.usage.record(usage);
        self.usage.estimated.store(estimated, Ordering::Relaxed);
        if let (Some(metrics), Some(candidate)) = (self.token_metrics, &self.answered_by) {
            let (input, output) = (usage.input.unwrap_or(0), usage.output.unwrap_or(0));
            let (provider, model) = (&candidate.provider.id, &candidate.model.id);
            metrics.add_tokens(provider, model, input, output, estimated);
        }
    }

    /// Passes `data` through the scanner; when the upstream body has nothing more, finishes at
    /// once (hyper stops polling a body whose announced length has been sent).
    fn forward(&mut self, data: Bytes) -> Option<Bytes> {
        let mut out = self.scan.push(data);
        if let Scan::Sse(scanner) = &mut self.scan {
            let input = &self.input_estimate;
            let input_estimate = || input.as_ref().map_or(0, InputEstimate::tokens);
            // Last first, so the earlier ranges stay where they were.
            for range in scanner.take_unreported_usage_events().into_iter().rev() {
                let (reported, output) = (scanner.usage().input, || scanner.output_estimate());
                let event = fill_usage_event(&out[range.clone()], reported, input_estimate, output);
                if let Some(event) = event {
                    out = splice(&out, range, &event);
                }
            }

            if let (Some(fill), Some(at)) = (&self.usage_fill, scanner.take_done_offset()) {
                if scanner.usage().output.is_none() {
                    let chunk = fill.chunk(input_estimate(), scanner.output_estimate());
                    out = splice(&out, at..at, &chunk);
                }
            }
        }
        if self.first.is_none() && self.inner.is_end_stream() {
            let rest = self.record(End::Complete);
            if !rest.is_empty() {
                out = splice(&out, out.len()..out.len(), &rest);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Output tokens estimated to have passed so far (0 when not counted).
    fn output_passed(&self) -> u64 {
        match &self.scan {
            Scan::Sse(scanner) => scanner.output_estimate(),
            _ => 0,
        }
    }

    /// Sends `out` unless it carries output past the budget's grant: then it is held until more
    /// is granted, or replaced by an error event that ends the stream.
    fn release(
        &mut self,
        out: Bytes,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Counted only under a budget: a BPE count of the text's tail is not free.
        let passed = match &self.budget {
            Some(_) => self.output_passed(),
            None => 0,
        };
        match &mut self.budget {
            Some(budget) if passed > budget.granted && !self.finished => {
                let asked = Mutex::new(budget.allowance.extend(ALLOWANCE_STEP));
                budget.held = Some(Held { out, asked });
                self.poll_held(cx)
            }
            _ => Poll::Ready(Some(Ok(Frame::data(out)))),
        }
    }

    /// Polls the grant a held chunk waits for, asking again while it is not enough.
    fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let passed = self.output_passed();
        let Some(budget) = &mut self.budget else {
            return Poll::Ready(None);
        };
        loop {
            let Some(held) = budget.held.as_mut() else {
                return Poll::Ready(None);
            };
            let asked = held.asked.get_mut().unwrap_or_else(|p| p.into_inner());
            match std::task::ready!(asked.as_mut().poll(cx)) {
                Ok(granted) => {
                    budget.granted += granted;
                    if passed > budget.granted {
                        held.asked = Mutex::new(budget.allowance.extend(ALLOWANCE_STEP));
                        continue;
                    }
                    let out = budget.held.take().map(|held| held.out);
                    return Poll::Ready(out.map(|out| Ok(Frame::data(out))));
                }
                Err(exhausted) => {
                    budget.held = None;
                    let event = error_event(
                        budget.surface,
                        exhausted.kind,
                        &exhausted.message,
                        exhausted.code,
                    );
                    self.record(End::Broken(StreamFailure::Cut(exhausted.message)));
                    return Poll::Ready(Some(Ok(Frame::data(event))));
                }
            }
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if !self.finished {
            self.record(End::Abandoned);
        }
        if let Scan::Json(json) = &self.scan {
            let body = json.body();
            if !body.is_empty() {
                let complete = self.usage.complete.load(Ordering::Relaxed);
                let surface = json.surface;
                let reported = TokenUsage::from_response_body(&body);
                let tokenizer = self.tokenizer;
                self.settle_usage(reported, complete, || {
                    body_output(surface, tokenizer, &body)
                });
            }
        }
    }
}

impl UsageFill {
    /// A usage-only chunk (`choices: []`) as OpenAI sends it last when asked.
    fn chunk(&self, input: u64, output: u64) -> Vec<u8> {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let chunk = serde_json::json!({
            "id": "keygate-usage", "object": self.object, "created": created, "model": self.model,
            "choices": [],
            "usage": {"prompt_tokens": input, "completion_tokens": output,
                      "total_tokens": input + output},
        });
        format!("data: {chunk}\n\n").into_bytes()
    }
}

/// Whether the output that passed is needed to settle `reported`: none reported, or 0 (a
/// server's placeholder, counted when text passed), or the response did not complete (charged
/// at least what passed).
fn output_needed(reported: TokenUsage, complete: bool) -> bool {
    matches!(reported.output, None | Some(0)) || !complete
}

/// `out` with the bytes in `range` replaced by `insert`.
fn splice(out: &Bytes, range: std::ops::Range<usize>, insert: &[u8]) -> Bytes {
    let mut joined = bytes::BytesMut::with_capacity(out.len() + insert.len());
    joined.extend_from_slice(&out[..range.start]);
    joined.extend_from_slice(insert);
    joined.extend_from_slice(&out[range.end..]);
    joined.freeze()
}

/// Estimated output tokens of a whole response body.
fn body_output(surface: Surface, tokenizer: Tokenizer, body: &[u8]) -> u64 {
    let mut estimate = OutputEstimate::for_body(surface, tokenizer);
    estimate.scan(body);
    estimate.tokens()
}

/// How a [`MeteredBody`] ended.
enum End {
    /// The upstream body ended as HTTP frames it.
    Complete,
    /// The upstream body failed or went idle, or the gateway cut it.
    Broken(StreamFailure),
    /// The client went away first.
    Abandoned,
}

/// What a failed upstream body read means: a reset, a connection closed before the body's end
/// (hyper reports both as I/O errors beneath its own), or something else, quoted.
fn failure_of(err: &(dyn std::error::Error + 'static)) -> StreamFailure {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    return StreamFailure::Reset
                }
                std::io::ErrorKind::UnexpectedEof => return StreamFailure::Closed,
                _ => {}
            }
        }
        if keygate_http::is_incomplete_message(err) {
            return StreamFailure::Closed;
        }
        cause = err.source();
    }
    StreamFailure::Read(err.to_string())
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.budget.as_ref().is_some_and(|b| b.held.is_some()) {
            return this.poll_held(cx);
        }
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            if let Some(out) = this.forward(first) {
                return this.release(out, cx);
            }
            if this.finished {
                return Poll::Ready(None);
            }
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                    match frame.into_data() {
                        Ok(data) => {
                            if let Some(out) = this.forward(data) {
                                return this.release(out, cx);
                            }
                            if this.finished {
                                return Poll::Ready(None);
                            }
                        }
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.record(End::Broken(failure_of(&*err)));
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    let rest = this.record(End::Complete);
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        let idle = StreamFailure::Idle(this.idle);
                        let message = idle.to_string();
                        this.record(End::Broken(idle));
                        return Poll::Ready(Some(Err(message.into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.scan, &self.first) {
            (Scan::Sse(_), _) => SizeHint::default(),
            (_, Some(first)) => {
                let inner = self.inner.size_hint();
                let extra = first.len() as u64;
                let mut hint = SizeHint::new();
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint.set_lower(inner.lower().saturating_add(extra));
                hint
            }
            _ => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn body_of(chunks: Vec<&'static str>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c.as_bytes()))));
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[tokio::test]
    async fn forwards_and_meters_a_stream() {
        let usage = Arc::new(Usage::default());
        let inner = body_of(vec![
            "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n",
        ]);
        let first = Some(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        ));
        let body = MeteredBody::new(
            first,
            inner,
            Scan::for_content_type("text/event-stream", Surface::ChatCompletions, true),
            usage.clone(),
            Duration::from_secs(5),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.starts_with("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}"));
        assert!(
            !text.contains("prompt_tokens"),
            "usage chunk not stripped: {text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(usage.input_tokens.load(Ordering::Relaxed), 3);
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 4);
        assert!(usage.complete.load(Ordering::Relaxed));
        assert_eq!(usage.broken.get(), None);
    }

    fn sse(inner: Body, usage: &Arc<Usage>) -> MeteredBody {
        let scan = Scan::for_content_type("text/event-stream", Surface::Messages, false);
        MeteredBody::new(None, inner, scan, usage.clone(), Duration::from_secs(5))
    }

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":6}}}\n\n";

    #[tokio::test]
    async fn a_reset_upstream_is_recorded_with_the_events_seen() {
        let usage = Arc::new(Usage::default());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(START.as_bytes()))),
            Err(BoxError::from(reset)),
        ];
        let inner = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let mut body = sse(inner, &usage);
        body.frame().await.unwrap().unwrap();
        assert!(
            body.frame().await.unwrap().is_err(),
            "the client's copy ends too"
        );
        assert!(body.frame().await.is_none());
        let broken = usage.broken.get().unwrap();
        assert_eq!((&broken.cause, broken.events), (&StreamFailure::Reset, 1));
        assert_eq!(usage.input_tokens.load(Ordering::Relaxed), 6);
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(failure_of(&eof), StreamFailure::Closed);
        let other = std::io::Error::other("tls alert");
        assert_eq!(
            failure_of(&other).to_string(),
            "upstream stream ended early: tls alert"
        );
    }

    #[tokio::test]
    async fn a_stream_without_its_final_event_is_unfinished() {
        let usage = Arc::new(Usage::default());
        let body = sse(body_of(vec![START]), &usage);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, START.as_bytes(), "what came is forwarded as it came");
        let broken = usage.broken.get().unwrap();
        assert_eq!(
            (&broken.cause, broken.events),
            (&StreamFailure::Unfinished, 1)
        );
        let usage = Arc::new(Usage::default());
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        sse(body_of(vec![START, stop]), &usage)
            .collect()
            .await
            .unwrap();
        assert_eq!(usage.broken.get(), None);
    }

    #[tokio::test]
    async fn an_error_event_is_the_cause_however_the_stream_ends() {
        let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        // The provider ends the stream after its error event.
        let usage = Arc::new(Usage::default());
        let bytes = sse(body_of(vec![START, error]), &usage)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(bytes, [START, error].concat().as_bytes());
        let broken = usage.broken.get().unwrap();
        assert_eq!(
            (&broken.cause, broken.events),
            (&StreamFailure::ErrorEvent, 2)
        );
        // The client stops reading at the error and goes away before the stream's end.
        let usage = Arc::new(Usage::default());
        let mut body = sse(body_of(vec![START, error, START]), &usage);
        body.frame().await.unwrap().unwrap();
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(usage.broken.get().unwrap().cause, StreamFailure::ErrorEvent);
    }

    #[tokio::test]
    async fn size_hint_counts_the_first_chunk() {
        let inner = http_body_util::Full::new(Bytes::from_static(b"\"completion_tokens\":5}}"))
            .map_err(|never| match never {})
            .boxed();
        let usage = Arc::new(Usage::default());
        let first = Some(Bytes::from_static(b"{\"usage\":{"));
        let mut body = MeteredBody::new(
            first,
            inner,
            Scan::for_content_type("application/json", Surface::ChatCompletions, false),
            usage.clone(),
            Duration::from_secs(1),
        );
        assert_eq!(body.size_hint().exact(), Some(33));
        // Like hyper with a known length: read exactly the announced bytes, never poll the end.
        body.frame().await.unwrap().unwrap();
        body.frame().await.unwrap().unwrap();
        assert!(body.is_end_stream());
        assert!(usage.complete.load(Ordering::Relaxed));
        // A JSON body's usage is read when the body is dropped, after the client got its bytes.
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 0);
        drop(body);
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn a_dropped_body_still_reports_what_it_saw() {
        let usage = Arc::new(Usage::default());
        let inner = body_of(vec!["data: {\"usage\":{\"prompt_tokens\":4}}\n\n"]);
        let mut body = MeteredBody::new(
            None,
            inner,
            Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false),
            usage.clone(),
            Duration::from_secs(5),
        );
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(usage.input_tokens.load(Ordering::Relaxed), 4);
        assert!(!usage.complete.load(Ordering::Relaxed));
        assert_eq!(
            usage.broken.get(),
            None,
            "a client that left is no upstream failure"
        );
    }

    #[tokio::test]
    async fn meters_json() {
        let usage = Arc::new(Usage::default());
        let inner = body_of(vec!["\"prompt_tokens\":1,\"completion_tokens\":2}}"]);
        let first = Some(Bytes::from_static(
            b"{\"object\":\"chat.completion\",\"usage\":{",
        ));
        let body = MeteredBody::new(
            first,
            inner,
            Scan::for_content_type("application/json", Surface::ChatCompletions, false),
            usage.clone(),
            Duration::from_secs(5),
        );
        body.collect().await.unwrap();
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 2);
    }

    const CHUNK: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"abcdabcd\"}}]}\n\n";

    /// The input estimate of a request whose heuristic count is `tokens` (at least 3).
    fn input_of(tokens: u64) -> InputEstimate {
        let body = serde_json::json!({"input": "x".repeat(4 * (tokens as usize - 3))});
        let request = keygate_ai::ClientRequest::parse(body.to_string().into()).unwrap();
        assert_eq!(request.input_estimate, tokens);
        request.input_estimate_for(Tokenizer::Heuristic)
    }

    #[tokio::test]
    async fn an_openai_model_s_output_is_counted_with_its_vocabulary() {
        // "Hello, world!" split mid-word across deltas: 4 tokens in o200k_base, as a whole.
        let chunks = vec![
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo, wor\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"ld!\"}}]}\n\ndata: [DONE]\n\n",
        ];
        for (tokenizer, output) in [(Tokenizer::O200k, 4), (Tokenizer::Heuristic, 4)] {
            let usage = Arc::new(Usage::default());
            let scan = Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false);
            let body = MeteredBody::new(
                None,
                body_of(chunks.clone()),
                scan,
                usage.clone(),
                Duration::from_secs(5),
            )
            .counting_with(tokenizer)
            .estimating_output(Surface::ChatCompletions);
            body.collect().await.unwrap();
            assert_eq!(
                usage.output_tokens.load(Ordering::Relaxed),
                output,
                "{tokenizer:?}"
            );
        }
        // Where they differ: "hello world" 10 times is 20 tokens, 119 characters.
        let words = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"hello world hello world hello world ",
            "hello world hello world hello world hello world hello world hello world hello world",
            "\"}}]}\n\ndata: [DONE]\n\n"
        );
        for (tokenizer, output) in [(Tokenizer::O200k, 20), (Tokenizer::Heuristic, 30)] {
            let usage = Arc::new(Usage::default());
            let scan = Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false);
            let inner = body_of(vec![words]);
            let body = MeteredBody::new(None, inner, scan, usage.clone(), Duration::from_secs(5))
                .counting_with(tokenizer)
                .estimating_output(Surface::ChatCompletions);
            body.collect().await.unwrap();
            assert_eq!(
                usage.output_tokens.load(Ordering::Relaxed),
                output,
                "{tokenizer:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_messages_stream_without_usage_gets_the_estimate_in_its_usage_events() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n";
        let text = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"abcdefgh\"}}\n\n";
        let delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let usage = Arc::new(Usage::default());
        let body = sse(body_of(vec![start, text, delta, stop]), &usage)
            .estimating_output(Surface::Messages)
            .with_input_estimate(input_of(17));
        let out = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let filled = "event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"end_turn\"},\"type\":\"message_delta\",\"usage\":{\"input_tokens\":17,\"output_tokens\":2}}\n\n";
        let started = "event: message_start\ndata: {\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":17,\"output_tokens\":0}},\"type\":\"message_start\"}\n\n";
        assert_eq!(out, [started, text, filled, stop].concat());
        assert!(usage.estimated.load(Ordering::Relaxed));
        assert_eq!(usage.input_tokens.load(Ordering::Relaxed), 17);
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn usage_the_provider_does_not_report_is_estimated() {
        let usage = Arc::new(Usage::default());
        let body = MeteredBody::new(
            None,
            body_of(vec![CHUNK, CHUNK, "data: [DONE]\n\n"]),
            Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false),
            usage.clone(),
            Duration::from_secs(5),
        )
        .estimating_output(Surface::ChatCompletions)
        .with_input_estimate(input_of(17));
        body.collect().await.unwrap();
        assert!(usage.estimated.load(Ordering::Relaxed));
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 4);
        assert_eq!(usage.input_tokens.load(Ordering::Relaxed), 17);
    }

    #[tokio::test]
    async fn a_client_that_asked_for_usage_gets_the_estimate_when_the_provider_sends_none() {
        let usage = Arc::new(Usage::default());
        let body = MeteredBody::new(
            None,
            body_of(vec![CHUNK, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n"]),
            Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false),
            usage.clone(),
            Duration::from_secs(5),
        )
        .estimating_output(Surface::ChatCompletions)
        .with_input_estimate(input_of(17))
        .with_usage_fill(UsageFill {
            object: "chat.completion.chunk",
            model: "smollm2".into(),
        });
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 4, "{text}");
        assert_eq!(events[3], "data: [DONE]");
        let made: serde_json::Value =
            serde_json::from_str(events[2].strip_prefix("data: ").unwrap()).unwrap();
        let input = 17;
        assert_eq!(made["object"], "chat.completion.chunk");
        assert_eq!(made["model"], "smollm2");
        assert_eq!(made["choices"], serde_json::json!([]));
        assert_eq!(
            made["usage"],
            serde_json::json!({"prompt_tokens": input, "completion_tokens": 2, "total_tokens": input + 2})
        );
        assert!(usage.estimated.load(Ordering::Relaxed));
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 2);

        // A provider that reports usage is left alone.
        let reported = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        let body = MeteredBody::new(
            None,
            body_of(vec![CHUNK, reported]),
            Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false),
            Arc::new(Usage::default()),
            Duration::from_secs(5),
        )
        .with_usage_fill(UsageFill {
            object: "chat.completion.chunk",
            model: "gpt-4o".into(),
        });
        let text = body.collect().await.unwrap().to_bytes();
        assert_eq!(text, [CHUNK, reported].concat().as_bytes());
    }

    #[tokio::test]
    async fn complete_streams_teach_whether_the_provider_reports_usage() {
        let registry = keygate_ai::Registry::new(
            &keygate_ai::GatewaySpec::default(),
            keygate_ai::Catalog::builtin(),
        )
        .unwrap();
        let candidate = registry.available(None)[0].clone();
        let provider = candidate.provider.clone();
        assert!(!provider.stream_usage.reported(), "unknown at first");
        let stream = |chunks: Vec<&'static str>| {
            MeteredBody::new(
                None,
                body_of(chunks),
                Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false),
                Arc::new(Usage::default()),
                Duration::from_secs(5),
            )
            .answered_by(candidate.clone())
        };
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n";
        let done = "data: [DONE]\n\n";
        stream(vec![CHUNK, usage, done]).collect().await.unwrap();
        assert!(provider.stream_usage.reported());
        // A stream that broke off teaches nothing; a complete one without usage does.
        stream(vec![CHUNK]).collect().await.unwrap();
        assert!(provider.stream_usage.reported());
        stream(vec![CHUNK, done]).collect().await.unwrap();
        assert!(!provider.stream_usage.reported());
    }

    /// Grants `first` tokens up front, then what `then` lists, one entry per request for more.
    struct Scripted {
        first: u64,
        then: std::sync::Mutex<Vec<Result<u64, Exhausted>>>,
    }

    impl Allowance for Scripted {
        fn granted(&self) -> u64 {
            self.first
        }

        fn extend(&self, _more: u64) -> BoxFuture<'static, Result<u64, Exhausted>> {
            let next = self.then.lock().unwrap().remove(0);
            Box::pin(async move {
                tokio::task::yield_now().await;
                next
            })
        }
    }

    fn budgeted(first: u64, then: Vec<Result<u64, Exhausted>>, usage: &Arc<Usage>) -> MeteredBody {
        let chunks = vec![CHUNK, CHUNK, CHUNK, "data: [DONE]\n\n"];
        let allowance = Arc::new(Scripted {
            first,
            then: std::sync::Mutex::new(then),
        });
        MeteredBody::new(
            None,
            body_of(chunks),
            Scan::for_content_type("text/event-stream", Surface::ChatCompletions, false),
            usage.clone(),
            Duration::from_secs(5),
        )
        .with_allowance(allowance, Surface::ChatCompletions)
    }

    #[tokio::test]
    async fn output_past_the_grant_waits_for_more() {
        let usage = Arc::new(Usage::default());
        // 2 tokens per chunk: the 2nd and 3rd chunks each need one more grant.
        let body = budgeted(2, vec![Ok(2), Ok(1), Ok(5)], &usage);
        let text = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            text,
            [CHUNK, CHUNK, CHUNK, "data: [DONE]\n\n"]
                .concat()
                .as_bytes()
        );
        assert_eq!(usage.broken.get(), None);
    }

    #[tokio::test]
    async fn a_spent_budget_ends_the_stream_with_an_error_event() {
        let usage = Arc::new(Usage::default());
        let spent = Exhausted {
            kind: "rate_limit_error",
            code: "ERR_KEYGATE_27009",
            message: "access key aigk_1 has spent its token budget".into(),
        };
        let body = budgeted(3, vec![Ok(1), Err(spent)], &usage);
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let error = "data: {\"error\":{\"code\":\"ERR_KEYGATE_27009\",\"message\":\"access key aigk_1 has spent its token budget\",\"type\":\"rate_limit_error\"}}\n\n";
        assert_eq!(
            text,
            [CHUNK, CHUNK, error].concat(),
            "the third chunk is withheld"
        );
        let broken = usage.broken.get().unwrap();
        assert!(matches!(broken.cause, StreamFailure::Cut(_)));
        assert!(!usage.complete.load(Ordering::Relaxed));
        // Charged for what passed, the withheld chunk included: never less than was sent.
        assert_eq!(usage.output_tokens.load(Ordering::Relaxed), 6);
        assert!(usage.estimated.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn idle_streams_end_with_an_error() {
        let usage = Arc::new(Usage::default());
        let inner = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >())
        .boxed();
        let mut body = MeteredBody::new(
            None,
            inner,
            Scan::Nothing,
            usage.clone(),
            Duration::from_millis(30),
        );
        let frame = body.frame().await.unwrap();
        assert!(frame.unwrap_err().to_string().contains("sent nothing"));
        assert!(body.frame().await.is_none());
        let cause = &usage.broken.get().unwrap().cause;
        assert_eq!(cause.to_string(), "upstream sent nothing for 30 ms");
    }
}
