//! OpenAI Chat Completions (`POST /v1/chat/completions`): requests, whole answers and SSE
//! streams, to and from the neutral types of [`super::ir`].
//!
//! Beyond OpenAI's own fields this reads two common extensions: `reasoning_content` (DeepSeek,
//! vLLM, OpenRouter: the model's reasoning, next to `content`; also written in answers) and
//! `cache_control` on content parts (Anthropic's OpenAI-compatible endpoint), kept for a Claude
//! target. Requests for Chat providers carry no `cache_control`: OpenAI and the self-hosted
//! servers have no prompt-cache markers, and a strict server would refuse the field.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::ir::{
    Codec, Delta, Finish, Image, ImageSource, Invalid, Message, Part, Reasoning, Removed, Request,
    Response, Role, StreamDecoder, StreamEncoder, TextPart, Tool, ToolChoice, Usage,
};
use super::{parse_object, sse_write, Str};
use crate::sse::error_event;
use crate::Surface;

/// The top-level request keys the decoder reads; any other key is reported removed.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    // Only says whether the client wants the usage chunk, which the gateway reads itself.
    "stream_options",
    "reasoning_effort",
    "user",
    "safety_identifier",
    "n",
];

/// What joins text blocks when Chat has room for one string only (the system message, a tool
/// result): a blank line keeps the blocks visibly apart.
const BLOCK_SEPARATOR: &str = "\n\n";

/// The Chat Completions format.
pub struct Chat;

impl Codec for Chat {
    fn decode_request(
        body: &Map<String, Value>,
        removed: &mut Removed,
    ) -> Result<Request, Invalid> {
        decode_request(body, removed)
    }

    /// Writes `max_tokens`, not `max_completion_tokens`: vLLM, llama.cpp and older
    /// OpenAI-compatible servers know only the former; the gateway's per-provider parameter
    /// names rename it where a provider (OpenAI's o-series) wants the latter.
    fn encode_request(request: &Request, removed: &mut Removed) -> Map<String, Value> {
        encode_request(request, removed)
    }

    fn decode_response(body: &Value) -> Result<Response, Invalid> {
        decode_response(body)
    }

    /// Thinking goes into `message.reasoning_content`, which OpenAI does not define but the
    /// clients of DeepSeek, vLLM and OpenRouter read.
    fn encode_response(response: &Response) -> Value {
        encode_response(response)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests, client to ir.

fn decode_request(body: &Map<String, Value>, removed: &mut Removed) -> Result<Request, Invalid> {
    removed.note_unknown(body, KNOWN);
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| Invalid::new("messages: expected an array"))?;
    let mut conversation = Conversation::default();
    for (i, message) in messages.iter().enumerate() {
        conversation.add(i, message, removed)?;
    }
    if body
        .get("n")
        .is_some_and(|n| !n.is_null() && n.as_u64() != Some(1))
    {
        removed.note("n");
    }
    Ok(Request {
        // Absent when the client names its models in `models` (an ngrok extension) instead.
        model: opt_str(body, "model", "")?.unwrap_or_default().to_owned(),
        system: conversation.system,
        messages: conversation.messages,
        tools: decode_tools(body.get("tools"), removed)?,
        tool_choice: decode_tool_choice(body.get("tool_choice"), removed)?,
        parallel_tool_calls: opt_bool(body, "parallel_tool_calls", "")?,
        max_tokens: decode_max_tokens(body)?,
        temperature: opt_f64(body, "temperature")?,
        top_p: opt_f64(body, "top_p")?,
        stop: decode_stop(body.get("stop"))?,
        stream: opt_bool(body, "stream", "")?.unwrap_or(false),
        reasoning: decode_reasoning(body)?,
        user: decode_user(body, removed)?,
    })
}

/// The messages decoded so far.
#[derive(Default)]
struct Conversation {
    system: Vec<TextPart>,
    messages: Vec<Message>,
    /// The last ir message holds the results of the tool messages just read: the next tool
    /// message joins it.
    after_tool: bool,
}

impl Conversation {
    /// Decodes `messages[i]`.
    fn add(&mut self, i: usize, message: &Value, removed: &mut Removed) -> Result<(), Invalid> {
        let path = format!("messages[{i}]");
        let message = message
            .as_object()
            .ok_or_else(|| invalid(&path, "expected an object"))?;
        let role = opt_str(message, "role", &path)?
            .ok_or_else(|| invalid(&format!("{path}.role"), "missing"))?;
        match role {
            "system" | "developer" => {
                note_unknown_at(message, &["role", "content"], &path, removed);
                let parts = decode_content(message.get("content"), &path, false, removed)?;
                // Without images, content decodes to text parts only.
                self.system
                    .extend(parts.into_iter().filter_map(|part| match part {
                        Part::Text(text) => Some(text),
                        _ => None,
                    }));
            }
            "user" => {
                note_unknown_at(message, &["role", "content"], &path, removed);
                let content = decode_content(message.get("content"), &path, true, removed)?;
                self.push(Role::User, content);
            }
            "assistant" => {
                let content = decode_assistant(message, &path, removed)?;
                self.push(Role::Assistant, content);
            }
            "tool" => {
                let result = decode_tool_result(message, &path, removed)?;
                self.push_tool_result(result);
            }
            "function" => removed.note(format!("{path}.role=function")),
            other => {
                return Err(invalid(
                    &format!("{path}.role"),
                    &format!("unknown role '{other}'"),
                ))
            }
        }
        Ok(())
    }

    fn push(&mut self, role: Role, content: Vec<Part>) {
        self.messages.push(Message { role, content });
        self.after_tool = false;
    }

    /// Tool messages in a row become one user message holding their results, in order.
    fn push_tool_result(&mut self, result: Part) {
        match self.messages.last_mut() {
            Some(last) if self.after_tool => last.content.push(result),
            _ => {
                self.push(Role::User, vec![result]);
                self.after_tool = true;
            }
        }
    }
}

fn decode_assistant(
    message: &Map<String, Value>,
    path: &str,
    removed: &mut Removed,
) -> Result<Vec<Part>, Invalid> {
    const KNOWN: &[&str] = &[
        "role",
        "content",
        "tool_calls",
        "reasoning_content",
        "reasoning",
    ];
    note_unknown_at(message, KNOWN, path, removed);
    let mut parts = Vec::new();
    if let Some(text) = reasoning_text(message) {
        parts.push(Part::Thinking {
            text: text.to_owned(),
            signature: None,
        });
    }
    parts.extend(decode_content(
        message.get("content"),
        path,
        false,
        removed,
    )?);
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(parts),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(invalid(&format!("{path}.tool_calls"), "expected an array")),
    };
    for (j, call) in calls.iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{j}]");
        match decode_tool_call(call, &call_path)? {
            Some(call) => parts.push(call),
            None => removed.note(format!("{call_path}.type={}", type_of(call))),
        }
    }
    Ok(parts)
}

/// The reasoning DeepSeek and vLLM put in `reasoning_content` (vLLM's newer name and
/// OpenRouter's: `reasoning`), when there is some.
fn reasoning_text(object: &Map<String, Value>) -> Option<&str> {
    ["reasoning_content", "reasoning"].iter().find_map(|key| {
        object
            .get(*key)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    })
}

/// One entry of `tool_calls`; `None` for a kind other than `function` (custom tools).
fn decode_tool_call(call: &Value, path: &str) -> Result<Option<Part>, Invalid> {
    let call = call
        .as_object()
        .ok_or_else(|| invalid(path, "expected an object"))?;
    if opt_str(call, "type", path)?.is_some_and(|kind| kind != "function") {
        return Ok(None);
    }
    let function_path = format!("{path}.function");
    let function = call
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(&function_path, "expected an object"))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        // Some clients send the arguments as an object rather than as its JSON text.
        Some(other) => other.to_string(),
    };
    Ok(Some(Part::ToolCall {
        id: required_str(call, "id", path)?.to_owned(),
        name: required_str(function, "name", &function_path)?.to_owned(),
        arguments,
    }))
}

fn decode_tool_result(
    message: &Map<String, Value>,
    path: &str,
    removed: &mut Removed,
) -> Result<Part, Invalid> {
    note_unknown_at(message, &["role", "content", "tool_call_id"], path, removed);
    Ok(Part::ToolResult {
        id: required_str(message, "tool_call_id", path)?.to_owned(),
        content: decode_content(message.get("content"), path, false, removed)?,
        is_error: false,
    })
}

/// A message's `content`: a string (one text part), an array of parts, or null (none).
/// Image parts are kept when `images` (user messages); other kinds of part are reported removed.
fn decode_content(
    content: Option<&Value>,
    path: &str,
    images: bool,
    removed: &mut Removed,
) -> Result<Vec<Part>, Invalid> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) => return Ok(vec![Part::Text(plain(text))]),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(invalid(
                &format!("{path}.content"),
                "expected a string or an array",
            ))
        }
    };
    let mut decoded = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let part_path = format!("{path}.content[{j}]");
        let part = part
            .as_object()
            .ok_or_else(|| invalid(&part_path, "expected an object"))?;
        let cache = part.get("cache_control").filter(|c| !c.is_null()).cloned();
        match required_str(part, "type", &part_path)? {
            "text" => decoded.push(Part::Text(TextPart {
                text: required_str(part, "text", &part_path)?.to_owned(),
                cache,
            })),
            "image_url" if images => decoded.push(Part::Image(Image {
                source: decode_image_url(part, &part_path, removed)?,
                cache,
            })),
            other => removed.note(format!("{part_path}.type={other}")),
        }
    }
    Ok(decoded)
}

/// An `image_url` part's image: an `http(s)` URL or a base64 `data:` URL.
fn decode_image_url(
    part: &Map<String, Value>,
    path: &str,
    removed: &mut Removed,
) -> Result<ImageSource, Invalid> {
    let image_path = format!("{path}.image_url");
    let url = match part.get("image_url") {
        // Some clients send the URL itself.
        Some(Value::String(url)) => url.as_str(),
        Some(Value::Object(image)) => {
            if image
                .get("detail")
                .is_some_and(|detail| !detail.is_null() && detail != "auto")
            {
                removed.note(format!("{image_path}.detail"));
            }
            required_str(image, "url", &image_path)?
        }
        _ => return Err(invalid(&image_path, "expected an object")),
    };
    parse_image_url(url).ok_or_else(|| {
        invalid(
            &format!("{image_path}.url"),
            "expected an http(s) URL or a base64 data URL",
        )
    })
}

fn parse_image_url(url: &str) -> Option<ImageSource> {
    if let Some(data_url) = url.strip_prefix("data:") {
        let (meta, data) = data_url.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        return Some(ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    let scheme = url.split_once("://")?.0;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        .then(|| ImageSource::Url(url.to_owned()))
}

fn decode_tools(tools: Option<&Value>, removed: &mut Removed) -> Result<Vec<Tool>, Invalid> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(Invalid::new("tools: expected an array")),
    };
    let mut decoded = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = tool
            .as_object()
            .ok_or_else(|| invalid(&path, "expected an object"))?;
        let kind = required_str(tool, "type", &path)?;
        if kind != "function" {
            removed.note(format!("{path}.type={kind}"));
            continue;
        }
        note_unknown_at(tool, &["type", "function"], &path, removed);
        decoded.push(decode_function(tool, &path)?);
    }
    Ok(decoded)
}

fn decode_function(tool: &Map<String, Value>, path: &str) -> Result<Tool, Invalid> {
    let path = format!("{path}.function");
    let function = tool
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(&path, "expected an object"))?;
    Ok(Tool {
        name: required_str(function, "name", &path)?.to_owned(),
        description: opt_str(function, "description", &path)?.map(str::to_owned),
        // OpenAI lets a function without parameters be called with no arguments.
        parameters: function
            .get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        strict: opt_bool(function, "strict", &path)?,
        cache: None,
    })
}

fn decode_tool_choice(
    choice: Option<&Value>,
    removed: &mut Removed,
) -> Result<Option<ToolChoice>, Invalid> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(choice)) => choice.as_str(),
        Some(Value::Object(choice)) => {
            if choice.get("type").and_then(Value::as_str) != Some("function") {
                // `allowed_tools`, `custom`: no other format can say them.
                removed.note("tool_choice");
                return Ok(None);
            }
            let path = "tool_choice.function";
            let function = choice
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| invalid(path, "expected an object"))?;
            let name = required_str(function, "name", path)?;
            return Ok(Some(ToolChoice::Tool(name.to_owned())));
        }
        Some(_) => return Err(Invalid::new("tool_choice: expected a string or an object")),
    };
    match choice {
        "auto" => Ok(Some(ToolChoice::Auto)),
        "none" => Ok(Some(ToolChoice::None)),
        "required" => Ok(Some(ToolChoice::Required)),
        other => Err(Invalid::new(format!(
            "tool_choice: unknown value '{other}'"
        ))),
    }
}

/// `max_completion_tokens` or the older `max_tokens`; the smaller when a client sends both.
fn decode_max_tokens(body: &Map<String, Value>) -> Result<Option<u64>, Invalid> {
    let old = opt_u64(body, "max_tokens")?;
    let new = opt_u64(body, "max_completion_tokens")?;
    Ok(match (old, new) {
        (Some(old), Some(new)) => Some(old.min(new)),
        (old, new) => old.or(new),
    })
}

fn decode_stop(stop: Option<&Value>) -> Result<Vec<String>, Invalid> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(stop)) => Ok(vec![stop.clone()]),
        Some(Value::Array(stops)) => stops
            .iter()
            .enumerate()
            .map(|(i, stop)| {
                stop.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Invalid::new(format!("stop[{i}]: expected a string")))
            })
            .collect(),
        Some(_) => Err(Invalid::new("stop: expected a string or an array")),
    }
}

/// `reasoning_effort`; `none` (GPT-5.1) asks for no reasoning, as its absence does elsewhere.
fn decode_reasoning(body: &Map<String, Value>) -> Result<Option<Reasoning>, Invalid> {
    Ok(opt_str(body, "reasoning_effort", "")?
        .filter(|effort| *effort != "none")
        .map(|effort| Reasoning {
            budget_tokens: None,
            effort: Some(effort.to_owned()),
        }))
}

/// `user`, or its successor `safety_identifier`; the second is reported removed when both differ.
fn decode_user(
    body: &Map<String, Value>,
    removed: &mut Removed,
) -> Result<Option<String>, Invalid> {
    let user = opt_str(body, "user", "")?;
    let safety_identifier = opt_str(body, "safety_identifier", "")?;
    if user.is_some() && safety_identifier.is_some() && user != safety_identifier {
        removed.note("safety_identifier");
    }
    Ok(user.or(safety_identifier).map(str::to_owned))
}

// ---------------------------------------------------------------------------------------------
// Requests, ir to provider.

fn encode_request(request: &Request, removed: &mut Removed) -> Map<String, Value> {
    if has_cache_markers(request) {
        removed.note("cache_control");
    }
    let mut body = Map::new();
    body.insert("model".into(), request.model.clone().into());
    body.insert("messages".into(), encode_messages(request, removed).into());
    encode_tools(request, &mut body, removed);
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), max_tokens.into());
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), temperature.into());
    }
    if let Some(top_p) = request.top_p {
        body.insert("top_p".into(), top_p.into());
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), request.stop.clone().into());
    }
    if request.stream {
        body.insert("stream".into(), true.into());
        // The gateway meters streams by the usage chunk, which is only sent when asked for.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(reasoning) = &request.reasoning {
        body.insert("reasoning_effort".into(), reasoning.effort().into());
    }
    if let Some(user) = &request.user {
        body.insert("user".into(), user.clone().into());
    }
    body
}

fn encode_messages(request: &Request, removed: &mut Removed) -> Vec<Value> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": system_content(&request.system)}));
    }
    for (i, message) in request.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        match message.role {
            Role::User => encode_user(&message.content, &path, &mut messages, removed),
            Role::Assistant => messages.push(encode_assistant(&message.content, &path, removed)),
        }
    }
    messages
}

/// Whether any part or tool of the request has a prompt-cache breakpoint.
fn has_cache_markers(request: &Request) -> bool {
    let part_cached = |part: &Part| match part {
        Part::Text(text) => text.cache.is_some(),
        Part::Image(image) => image.cache.is_some(),
        _ => false,
    };
    request.system.iter().any(|part| part.cache.is_some())
        || request.tools.iter().any(|tool| tool.cache.is_some())
        || request
            .messages
            .iter()
            .flat_map(|message| &message.content)
            .any(part_cached)
}

/// One string, the most widely accepted form.
fn system_content(system: &[TextPart]) -> Value {
    let texts: Vec<&str> = system.iter().map(|part| part.text.as_str()).collect();
    texts.join(BLOCK_SEPARATOR).into()
}

/// A user message's parts: each tool result becomes a `tool` message, the text and images
/// between them user messages, in their order.
fn encode_user(parts: &[Part], path: &str, messages: &mut Vec<Value>, removed: &mut Removed) {
    let mut pending: Vec<&Part> = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        match part {
            Part::Text(_) | Part::Image(_) => pending.push(part),
            Part::ToolResult {
                id,
                content,
                is_error,
            } => {
                flush_user(&mut pending, messages);
                let part_path = format!("{path}.content[{j}]");
                if *is_error {
                    removed.note(format!("{part_path}.is_error"));
                }
                let content = tool_result_text(content, &part_path, removed);
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            other => note_part(other, &format!("{path}.content[{j}]"), removed),
        }
    }
    flush_user(&mut pending, messages);
}

fn flush_user(pending: &mut Vec<&Part>, messages: &mut Vec<Value>) {
    if pending.is_empty() {
        return;
    }
    let content = match pending.as_slice() {
        [Part::Text(TextPart { text, .. })] => Value::String(text.clone()),
        parts => parts.iter().filter_map(|part| user_part(part)).collect(),
    };
    messages.push(json!({"role": "user", "content": content}));
    pending.clear();
}

fn user_part(part: &Part) -> Option<Value> {
    match part {
        Part::Text(text) => Some(text_part(text)),
        Part::Image(image) => Some(image_part(image)),
        _ => None,
    }
}

/// The text of a tool result's parts; Chat tool messages carry text only.
fn tool_result_text(content: &[Part], path: &str, removed: &mut Removed) -> String {
    let mut texts = Vec::with_capacity(content.len());
    for (k, part) in content.iter().enumerate() {
        match part {
            Part::Text(text) => texts.push(text.text.as_str()),
            other => note_part(other, &format!("{path}.content[{k}]"), removed),
        }
    }
    texts.join(BLOCK_SEPARATOR)
}

fn encode_assistant(parts: &[Part], path: &str, removed: &mut Removed) -> Value {
    let mut texts: Vec<&TextPart> = Vec::new();
    let mut calls = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        match part {
            Part::Text(text) => texts.push(text),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}})),
            other => note_part(other, &format!("{path}.content[{j}]"), removed),
        }
    }
    let content = match texts.as_slice() {
        [] if calls.is_empty() => Value::String(String::new()),
        [] => Value::Null,
        [TextPart { text, .. }] => Value::String(text.clone()),
        texts => texts.iter().map(|text| text_part(text)).collect(),
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    message
}

/// Reports a part this message cannot carry in Chat. Thinking is reported once by name: a
/// reasoning conversation has it in every assistant turn.
fn note_part(part: &Part, path: &str, removed: &mut Removed) {
    let kind = match part {
        Part::Thinking { .. } | Part::RedactedThinking { .. } => return removed.note("thinking"),
        Part::Text(_) => "text",
        Part::Image(_) => "image",
        Part::ToolCall { .. } => "tool_call",
        Part::ToolResult { .. } => "tool_result",
    };
    removed.note(format!("{path}.type={kind}"));
}

fn text_part(text: &TextPart) -> Value {
    json!({"type": "text", "text": text.text})
}

fn image_part(image: &Image) -> Value {
    let url = match &image.source {
        ImageSource::Url(url) => url.clone(),
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
    };
    json!({"type": "image_url", "image_url": {"url": url}})
}

/// `tools`, and the settings that only mean something with tools.
fn encode_tools(request: &Request, body: &mut Map<String, Value>, removed: &mut Removed) {
    if request.tools.is_empty() {
        // OpenAI refuses `tool_choice` and `parallel_tool_calls` without `tools`.
        if request.tool_choice.is_some() {
            removed.note("tool_choice");
        }
        if request.parallel_tool_calls.is_some() {
            removed.note("parallel_tool_calls");
        }
        return;
    }
    let tools = request.tools.iter().map(encode_tool);
    body.insert("tools".into(), tools.collect());
    if let Some(choice) = &request.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(parallel) = request.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), parallel.into());
    }
}

fn encode_tool(tool: &Tool) -> Value {
    let mut function = json!({"name": tool.name, "parameters": tool.parameters});
    if let Some(description) = &tool.description {
        function["description"] = description.clone().into();
    }
    if let Some(strict) = tool.strict {
        function["strict"] = strict.into();
    }
    json!({"type": "function", "function": function})
}

// ---------------------------------------------------------------------------------------------
// Whole answers.

fn decode_response(body: &Value) -> Result<Response, Invalid> {
    let object = body
        .as_object()
        .ok_or_else(|| Invalid::new("expected an object"))?;
    let choices = object
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| Invalid::new("choices: expected an array"))?;
    let text = |key| object.get(key).and_then(Value::as_str).unwrap_or_default();
    let mut response = Response {
        id: text("id").to_owned(),
        model: text("model").to_owned(),
        created: object.get("created").and_then(Value::as_u64).unwrap_or(0),
        usage: object
            .get("usage")
            .map_or_else(Usage::default, |usage| read_usage(Usage::default(), usage)),
        ..Response::default()
    };
    // Only the first choice: the other formats have one answer.
    if let Some(choice) = choices.first() {
        let message = choice
            .get("message")
            .and_then(Value::as_object)
            .ok_or_else(|| Invalid::new("choices[0].message: expected an object"))?;
        response.content = decode_answer(message)?;
        response.finish = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(decode_finish);
    }
    Ok(response)
}

/// The parts of an answer's message: reasoning, then text (a refusal is the answer's text), then
/// tool calls.
fn decode_answer(message: &Map<String, Value>) -> Result<Vec<Part>, Invalid> {
    let mut parts = Vec::new();
    if let Some(text) = reasoning_text(message) {
        parts.push(Part::Thinking {
            text: text.to_owned(),
            signature: None,
        });
    }
    let text = answer_text(message.get("content"));
    let refusal = message.get("refusal").and_then(Value::as_str);
    for text in [Some(text.as_str()), refusal].into_iter().flatten() {
        if !text.is_empty() {
            parts.push(Part::Text(plain(text)));
        }
    }
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for (j, call) in calls.into_iter().flatten().enumerate() {
        // Custom (non-function) tool calls have no place in the other formats.
        if let Some(call) = decode_tool_call(call, &format!("choices[0].message.tool_calls[{j}]"))?
        {
            parts.push(call);
        }
    }
    Ok(parts)
}

/// `content` as a string, or the text of its text parts (some providers answer with parts).
fn answer_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn decode_finish(reason: &str) -> Finish {
    match reason {
        "length" => Finish::Length,
        "tool_calls" | "function_call" => Finish::ToolUse,
        "content_filter" => Finish::ContentFilter,
        // `stop`, and reasons only some servers have: generation ended.
        _ => Finish::Stop,
    }
}

fn encode_finish(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::Pause | Finish::StopSequence(_) => "stop",
        Finish::Length => "length",
        Finish::ToolUse => "tool_calls",
        Finish::ContentFilter => "content_filter",
    }
}

/// `usage` over `base`: the counts `usage` has replace those of `base`.
fn read_usage(base: Usage, usage: &Value) -> Usage {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64);
    Usage {
        input: count("/prompt_tokens").unwrap_or(base.input),
        output: count("/completion_tokens").unwrap_or(base.output),
        cache_read: count("/prompt_tokens_details/cached_tokens")
            // DeepSeek's name for it.
            .or_else(|| count("/prompt_cache_hit_tokens"))
            .unwrap_or(base.cache_read),
        cache_write: base.cache_write,
        reasoning: count("/completion_tokens_details/reasoning_tokens").unwrap_or(base.reasoning),
    }
}

fn encode_usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    })
}

fn encode_response(response: &Response) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for part in &response.content {
        match part {
            Part::Text(part) => text.push_str(&part.text),
            Part::Thinking { text, .. } => reasoning.push_str(text),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}})),
            // Encrypted thinking, and parts an answer does not have.
            _ => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    json!({
        "id": response.id,
        "object": "chat.completion",
        "created": response.created,
        "model": response.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": response.finish.as_ref().map(encode_finish),
        }],
        "usage": encode_usage(&response.usage),
    })
}

// ---------------------------------------------------------------------------------------------
// Streams, provider to ir.

/// Reads a Chat Completions stream (`data:` chunks, then `data: [DONE]`).
#[derive(Debug, Default)]
pub struct ChatDecoder {
    started: bool,
    /// A finish reason arrived; some servers repeat it on later chunks.
    finished: bool,
    /// `[DONE]` or an error arrived: nothing follows.
    ended: bool,
    usage: Usage,
    /// The upstream `index` of each tool call, by ir index; `None` for a call sent without one
    /// (some OpenAI-compatible servers leave it out).
    tool_calls: Vec<Option<u64>>,
}

impl StreamDecoder for ChatDecoder {
    fn event(&mut self, name: Option<&str>, data: &str, out: &mut Vec<Delta>) {
        if self.ended {
            return;
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.ended = true;
            out.push(Delta::Done);
            return;
        }
        // The chunks after the first that carry only choices, read without a `Value`.
        if self.started && name != Some("error") {
            if let Some(chunk) = parse_object::<ChoicesChunk>(data) {
                if chunk.usage.is_none() && chunk.error.is_none() {
                    self.choices(chunk.choices, out);
                    return;
                }
            }
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let Some(chunk) = event.as_object() else {
            return;
        };
        let error = match chunk.get("error") {
            Some(error) if !error.is_null() => Some(error),
            // Some servers name the event rather than wrap the error.
            _ if name == Some("error") => Some(&event),
            _ => None,
        };
        if let Some(error) = error {
            self.ended = true;
            out.push(error_delta(error));
            return;
        }
        self.chunk(chunk, out);
    }
}

/// A chunk holding choices and neither usage nor an error (both absent or `null`).
#[derive(Deserialize)]
struct ChoicesChunk<'a> {
    #[serde(borrow, default)]
    choices: Vec<ChoiceView<'a>>,
    usage: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

/// What the decoder reads of a choice, from the chunk's text or ([`ChoiceView::of`]) a `Value`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct ChoiceView<'a> {
    index: Option<u64>,
    #[serde(borrow)]
    delta: DeltaView<'a>,
    #[serde(borrow)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DeltaView<'a> {
    #[serde(borrow)]
    reasoning_content: Str<'a>,
    #[serde(borrow)]
    reasoning: Str<'a>,
    #[serde(borrow)]
    content: Str<'a>,
    #[serde(borrow)]
    refusal: Str<'a>,
    #[serde(borrow)]
    tool_calls: Vec<CallView<'a>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CallView<'a> {
    index: Option<u64>,
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    function: FunctionView<'a>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct FunctionView<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    arguments: Str<'a>,
}

// The views of a chunk parsed as a `Value`: a field of another type reads as absent.

impl<'a> ChoiceView<'a> {
    fn of(choice: &'a Value) -> Self {
        let delta = choice.get("delta").filter(|delta| delta.is_object());
        ChoiceView {
            index: choice.get("index").and_then(Value::as_u64),
            delta: delta.map(DeltaView::of).unwrap_or_default(),
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(Str::from),
        }
    }
}

impl<'a> DeltaView<'a> {
    fn of(delta: &'a Value) -> Self {
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        DeltaView {
            reasoning_content: Str::at(delta, "reasoning_content"),
            reasoning: Str::at(delta, "reasoning"),
            content: Str::at(delta, "content"),
            refusal: Str::at(delta, "refusal"),
            tool_calls: calls.into_iter().flatten().map(CallView::of).collect(),
        }
    }
}

impl<'a> CallView<'a> {
    fn of(call: &'a Value) -> Self {
        let function = call.get("function").unwrap_or(&Value::Null);
        CallView {
            index: call.get("index").and_then(Value::as_u64),
            id: Str::at(call, "id"),
            function: FunctionView {
                name: Str::at(function, "name"),
                arguments: Str::at(function, "arguments"),
            },
        }
    }
}

impl ChatDecoder {
    fn chunk(&mut self, chunk: &Map<String, Value>, out: &mut Vec<Delta>) {
        if !self.started {
            self.started = true;
            let text = |key| chunk.get(key).and_then(Value::as_str).unwrap_or_default();
            out.push(Delta::Start {
                id: text("id").to_owned(),
                model: text("model").to_owned(),
                created: chunk.get("created").and_then(Value::as_u64).unwrap_or(0),
            });
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        self.choices(choices.into_iter().flatten().map(ChoiceView::of), out);
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = read_usage(self.usage, usage);
            out.push(Delta::Usage(self.usage));
        }
    }

    /// Reads the first of a chunk's choices numbered 0 (or not numbered).
    fn choices<'a>(
        &mut self,
        choices: impl IntoIterator<Item = ChoiceView<'a>>,
        out: &mut Vec<Delta>,
    ) {
        let first = choices
            .into_iter()
            .find(|choice| choice.index.unwrap_or(0) == 0);
        let Some(ChoiceView {
            delta,
            finish_reason,
            ..
        }) = first
        else {
            return;
        };
        let reasoning = [delta.reasoning_content, delta.reasoning]
            .into_iter()
            .find(|text| !text.is_empty());
        if let Some(text) = reasoning {
            out.push(Delta::Thinking(text.into()));
        }
        for text in [delta.content, delta.refusal] {
            if !text.is_empty() {
                out.push(Delta::Text(text.into()));
            }
        }
        for call in delta.tool_calls {
            self.tool_call(call, out);
        }
        if let Some(reason) = finish_reason.filter(|_| !self.finished) {
            self.finished = true;
            out.push(Delta::Finish(decode_finish(&reason)));
        }
    }

    /// One `delta.tool_calls` entry: the first for a call starts it (its id and name), every
    /// one may carry an arguments fragment.
    fn tool_call(&mut self, call: CallView, out: &mut Vec<Delta>) {
        let (index, new) = self.tool_call_index(call.index, &call.id);
        if new {
            out.push(Delta::ToolCall {
                index,
                id: call.id.into(),
                name: call.function.name.into(),
            });
        }
        let fragment = call.function.arguments;
        if !fragment.is_empty() {
            out.push(Delta::ToolArguments {
                index,
                fragment: fragment.into(),
            });
        }
    }

    /// The ir index of the call with upstream index `key`, and whether the call is new. Without
    /// an index, a fragment with an id starts a call and one without continues the last.
    fn tool_call_index(&mut self, key: Option<u64>, id: &str) -> (usize, bool) {
        let known = match key {
            Some(_) => self.tool_calls.iter().position(|seen| *seen == key),
            None if id.is_empty() => self.tool_calls.len().checked_sub(1),
            None => None,
        };
        match known {
            Some(index) => (index, false),
            None => {
                self.tool_calls.push(key);
                (self.tool_calls.len() - 1, true)
            }
        }
    }
}

/// An `error` object (or a bare message) of a stream.
fn error_delta(error: &Value) -> Delta {
    let field = |key| error.get(key).and_then(Value::as_str);
    let message = match error {
        Value::String(message) => message.clone(),
        _ => field("message").map_or_else(|| error.to_string(), str::to_owned),
    };
    Delta::Error {
        kind: field("type")
            .or_else(|| field("code"))
            .unwrap_or("api_error")
            .to_owned(),
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// Streams, ir to client.

/// Writes a Chat Completions stream: a role chunk, content chunks, a chunk with the finish
/// reason, the usage chunk when the client asked for it, then `data: [DONE]`.
#[derive(Debug)]
pub struct ChatEncoder {
    include_usage: bool,
    /// The fields every chunk has after `choices` (`created`, `id` and `model` from
    /// [`Delta::Start`], and `object`), written once ([`chunk_fields`]).
    fields: Vec<u8>,
    usage: Option<Usage>,
    /// `[DONE]` or an error was written: nothing follows.
    ended: bool,
}

impl ChatEncoder {
    /// `include_usage`: the client asked for `stream_options.include_usage`, so the stream ends
    /// with a chunk holding only `usage` (`"choices": []`) before `[DONE]`.
    pub fn new(include_usage: bool) -> Self {
        ChatEncoder {
            include_usage,
            fields: chunk_fields("", "", 0),
            usage: None,
            ended: false,
        }
    }

    fn chunk(&self, delta: DeltaOut, finish_reason: Option<&str>, out: &mut Vec<u8>) {
        let choice = ChoiceOut {
            delta,
            finish_reason,
            index: 0,
        };
        self.write(&[choice], None, out);
    }

    /// Writes a chunk: `choices`, the stream's fields and `usage`, the keys in the (sorted) order a
    /// `Value` writes them.
    fn write(&self, choices: &[ChoiceOut], usage: Option<Value>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"choices\":");
        sse_write::json(out, &choices);
        out.extend_from_slice(&self.fields);
        if let Some(usage) = usage {
            out.extend_from_slice(b",\"usage\":");
            sse_write::json(out, &usage);
        }
        out.extend_from_slice(b"}\n\n");
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        if let Some(usage) = self.usage.filter(|_| self.include_usage) {
            self.write(&[], Some(encode_usage(&usage)), out);
        }
        write_data("[DONE]", out);
    }
}

impl StreamEncoder for ChatEncoder {
    fn delta(&mut self, delta: Delta, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match delta {
            Delta::Start { id, model, created } => {
                self.fields = chunk_fields(&id, &model, created);
                let delta = DeltaOut {
                    content: Some(""),
                    role: Some("assistant"),
                    ..DeltaOut::default()
                };
                self.chunk(delta, None, out);
            }
            Delta::Text(text) if !text.is_empty() => {
                let delta = DeltaOut {
                    content: Some(&text),
                    ..DeltaOut::default()
                };
                self.chunk(delta, None, out);
            }
            Delta::Thinking(text) if !text.is_empty() => {
                let delta = DeltaOut {
                    reasoning_content: Some(&text),
                    ..DeltaOut::default()
                };
                self.chunk(delta, None, out);
            }
            Delta::ToolCall { index, id, name } => {
                let call = CallOut {
                    function: FunctionOut {
                        arguments: "",
                        name: Some(&name),
                    },
                    id: Some(&id),
                    index,
                    kind: Some("function"),
                };
                self.chunk(DeltaOut::call(call), None, out);
            }
            Delta::ToolArguments { index, fragment } => {
                let call = CallOut {
                    function: FunctionOut {
                        arguments: &fragment,
                        name: None,
                    },
                    id: None,
                    index,
                    kind: None,
                };
                self.chunk(DeltaOut::call(call), None, out);
            }
            Delta::Usage(usage) => self.usage = Some(usage),
            Delta::Finish(finish) => {
                self.chunk(DeltaOut::default(), Some(encode_finish(&finish)), out);
            }
            Delta::Error { kind, message } => {
                self.ended = true;
                out.extend_from_slice(&error_event(
                    Surface::ChatCompletions,
                    &kind,
                    &message,
                    &kind,
                ));
            }
            Delta::Done => {
                self.ended = true;
                self.done(out);
            }
            // Empty text, and thinking signatures (only Messages can check them).
            Delta::Text(_) | Delta::Thinking(_) | Delta::ThinkingSignature(_) => {}
        }
    }
}

fn write_data(data: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// `,"created":…,"id":…,"model":…,"object":"chat.completion.chunk"`: the fields that follow
/// `choices` in every chunk.
fn chunk_fields(id: &str, model: &str, created: u64) -> Vec<u8> {
    let fields = json!({"created": created, "id": id, "model": model,
        "object": "chat.completion.chunk"});
    let mut fields = fields.to_string().into_bytes();
    fields[0] = b',';
    fields.pop();
    fields
}

// A chunk's choice as written, without a `Value`: fields in alphabetical order, as a `Value`
// writes them (see `sse_write`).

#[derive(Serialize)]
struct ChoiceOut<'a> {
    delta: DeltaOut<'a>,
    finish_reason: Option<&'a str>,
    index: u64,
}

#[derive(Default, Serialize)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[CallOut<'a>; 1]>,
}

impl<'a> DeltaOut<'a> {
    fn call(call: CallOut<'a>) -> Self {
        DeltaOut {
            tool_calls: Some([call]),
            ..DeltaOut::default()
        }
    }
}

#[derive(Serialize)]
struct CallOut<'a> {
    function: FunctionOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    index: usize,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    arguments: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

// ---------------------------------------------------------------------------------------------
// Field access.

fn invalid(path: &str, problem: &str) -> Invalid {
    Invalid::new(format!("{path}: {problem}"))
}

/// `key` inside the object at `path` (`""` for the body itself).
fn field_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn plain(text: &str) -> TextPart {
    TextPart {
        text: text.to_owned(),
        cache: None,
    }
}

/// Reports the keys of the object at `path` that are not `known`; a null says nothing and is
/// not reported.
fn note_unknown_at(object: &Map<String, Value>, known: &[&str], path: &str, removed: &mut Removed) {
    for (key, value) in object {
        if !value.is_null() && !known.contains(&key.as_str()) {
            removed.note(field_path(path, key));
        }
    }
}

/// The `type` of an object, for a report.
fn type_of(value: &Value) -> &str {
    value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
}

fn opt_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, Invalid> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(&field_path(path, key), "expected a string")),
    }
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, Invalid> {
    opt_str(object, key, path)?.ok_or_else(|| invalid(&field_path(path, key), "missing"))
}

fn opt_bool(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, Invalid> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(invalid(&field_path(path, key), "expected a boolean")),
    }
}

fn opt_u64(object: &Map<String, Value>, key: &str) -> Result<Option<u64>, Invalid> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(key, "expected a non-negative integer")),
    }
}

fn opt_f64(object: &Map<String, Value>, key: &str) -> Result<Option<f64>, Invalid> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(key, "expected a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    fn decode(body: Value) -> (Result<Request, Invalid>, Vec<String>) {
        let mut removed = Removed::default();
        let request = Chat::decode_request(&object(body), &mut removed);
        (request, removed.names().to_vec())
    }

    fn encode(request: &Request) -> (Value, Vec<String>) {
        let mut removed = Removed::default();
        let body = Chat::encode_request(request, &mut removed);
        (Value::Object(body), removed.names().to_vec())
    }

    fn text(text: &str) -> Part {
        Part::Text(plain(text))
    }

    fn cached(text: &str) -> TextPart {
        TextPart {
            text: text.into(),
            cache: Some(json!({"type": "ephemeral"})),
        }
    }

    fn call(id: &str, name: &str, arguments: &str) -> Part {
        Part::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn result(id: &str, content: Vec<Part>) -> Part {
        Part::ToolResult {
            id: id.into(),
            content,
            is_error: false,
        }
    }

    fn user(content: Vec<Part>) -> Message {
        Message {
            role: Role::User,
            content,
        }
    }

    fn assistant(content: Vec<Part>) -> Message {
        Message {
            role: Role::Assistant,
            content,
        }
    }

    fn weather_tool() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]}),
            strict: Some(true),
            cache: None,
        }
    }

    /// A request using everything Chat can say that the ir keeps.
    fn rich_request() -> Value {
        json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": [
                    {"type": "text", "text": "You are terse."},
                    {"type": "text", "text": "Docs: ...", "cache_control": {"type": "ephemeral"}}
                ]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris? See:"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/sky.png"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "reasoning_content": "Need the tool.", "content": "Checking.",
                 "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "Merci"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_3", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_3", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "Current weather", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "max_tokens": 500,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": ["END", "STOP"],
            "stream": true,
            "reasoning_effort": "high",
            "user": "user-42"
        })
    }

    fn rich_ir() -> Request {
        Request {
            model: "gpt-4.1".into(),
            system: vec![
                plain("You are terse."),
                cached("Docs: ..."),
                plain("Answer in French."),
            ],
            messages: vec![
                user(vec![
                    text("Weather in Paris? See:"),
                    Part::Image(Image {
                        source: ImageSource::Url("https://example.com/sky.png".into()),
                        cache: None,
                    }),
                    Part::Image(Image {
                        source: ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        },
                        cache: None,
                    }),
                ]),
                assistant(vec![
                    Part::Thinking {
                        text: "Need the tool.".into(),
                        signature: None,
                    },
                    text("Checking."),
                    call("call_1", "get_weather", r#"{"city":"Paris"}"#),
                    call("call_2", "get_weather", r#"{"city":"Lyon"}"#),
                ]),
                user(vec![
                    result("call_1", vec![text("18C")]),
                    result("call_2", vec![text("21C")]),
                ]),
                user(vec![text("Merci")]),
                assistant(vec![call("call_3", "get_weather", "{}")]),
                user(vec![result("call_3", vec![text("sunny")])]),
            ],
            tools: vec![weather_tool()],
            tool_choice: Some(ToolChoice::Tool("get_weather".into())),
            parallel_tool_calls: Some(false),
            max_tokens: Some(500),
            temperature: Some(0.2),
            top_p: Some(0.9),
            stop: vec!["END".into(), "STOP".into()],
            stream: true,
            reasoning: Some(Reasoning {
                budget_tokens: None,
                effort: Some("high".into()),
            }),
            user: Some("user-42".into()),
        }
    }

    #[test]
    fn decodes_a_rich_request() {
        let (request, removed) = decode(rich_request());
        assert_eq!(request.unwrap(), rich_ir());
        assert!(removed.is_empty(), "{removed:?}");
    }

    fn forget_cache_markers(request: &mut Request) {
        for part in &mut request.system {
            part.cache = None;
        }
        for part in request.messages.iter_mut().flat_map(|m| &mut m.content) {
            match part {
                Part::Text(text) => text.cache = None,
                Part::Image(image) => image.cache = None,
                _ => {}
            }
        }
    }

    #[test]
    fn a_rich_request_survives_decode_encode_decode() {
        let (first, _) = decode(rich_request());
        let first = first.unwrap();
        let (body, removed) = encode(&first);
        // Chat carries assistant reasoning in (DeepSeek's) replies only, not in requests, and
        // a Chat provider gets no prompt-cache markers.
        assert_eq!(removed, ["cache_control", "thinking"]);
        let (second, removed) = decode(body);
        assert!(removed.is_empty(), "{removed:?}");
        let mut expected = first;
        expected.messages[1].content.remove(0);
        forget_cache_markers(&mut expected);
        // Without cache breakpoints to keep apart, the system parts go out as one text.
        let system: Vec<&str> = expected.system.iter().map(|p| p.text.as_str()).collect();
        expected.system = vec![TextPart {
            text: system.join(BLOCK_SEPARATOR),
            cache: None,
        }];
        assert_eq!(second.unwrap(), expected);
    }

    #[test]
    fn reports_what_it_drops() {
        let (request, removed) = decode(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "name": "ann", "content": [
                    {"type": "text", "text": "Listen"},
                    {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                    {"type": "file", "file": {"file_id": "file-1"}}
                ]},
                {"role": "function", "name": "f", "content": "1"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}],
                 "refusal": "No.", "audio": {"id": "audio_1"}, "function_call": null},
                {"role": "user", "content": "ok"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "f"}},
                {"type": "custom", "custom": {"name": "grammar"}}
            ],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
            "functions": [{"name": "g"}],
            "seed": 7,
            "logprobs": true,
            "n": 2,
            "response_format": {"type": "json_object"},
            "stream_options": {"include_usage": true},
            "user": "a",
            "safety_identifier": "b"
        }));
        let request = request.unwrap();
        assert_eq!(
            removed,
            [
                "functions",
                "logprobs",
                "response_format",
                "seed",
                "messages[0].name",
                "messages[0].content[1].type=input_audio",
                "messages[0].content[2].image_url.detail",
                "messages[0].content[3].type=file",
                "messages[1].role=function",
                "messages[2].audio",
                "messages[2].refusal",
                "messages[2].content[0].type=refusal",
                "n",
                "tools[1].type=custom",
                "tool_choice",
                "safety_identifier",
            ]
        );
        assert_eq!(request.user.as_deref(), Some("a"));
        assert_eq!(request.tool_choice, None);
        assert_eq!(request.tools.len(), 1);
        // A function without parameters takes none.
        assert_eq!(
            request.tools[0].parameters,
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(request.messages.len(), 3);
        assert_eq!(request.messages[1], assistant(vec![]));
    }

    #[test]
    fn decodes_the_lenient_shapes_sdks_send() {
        let (request, removed) = decode(json!({
            "messages": [
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": "https://x.test/a.png"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/b.png", "detail": "auto"}}
                ]},
                {"role": "assistant", "tool_calls": [
                    {"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}},
                    {"id": "c2", "type": "function", "function": {"name": "g"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": ""},
                {"role": "tool", "tool_call_id": "c2", "content": null},
                {"role": "system", "content": "late system"}
            ],
            "max_tokens": 900,
            "max_completion_tokens": 300,
            "stop": "\n\n",
            "n": 1,
            "reasoning_effort": "none",
            "safety_identifier": "s-1",
            "temperature": null
        }));
        let request = request.unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        assert_eq!(request.model, "");
        assert_eq!(request.max_tokens, Some(300));
        assert_eq!(request.stop, ["\n\n"]);
        assert_eq!(request.reasoning, None);
        assert_eq!(request.user.as_deref(), Some("s-1"));
        assert_eq!(request.temperature, None);
        assert_eq!(request.system, [plain("late system")]);
        let url = |url: &str| {
            Part::Image(Image {
                source: ImageSource::Url(url.into()),
                cache: None,
            })
        };
        assert_eq!(
            request.messages,
            [
                user(vec![
                    url("https://x.test/a.png"),
                    url("https://x.test/b.png")
                ]),
                assistant(vec![call("c1", "f", r#"{"a":1}"#), call("c2", "g", "")]),
                user(vec![result("c1", vec![text("")]), result("c2", vec![])]),
            ]
        );
    }

    #[test]
    fn keeps_cache_control_on_parts() {
        let (request, _) = decode(json!({
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"},
                 "cache_control": {"type": "ephemeral"}}
            ]}]
        }));
        let request = request.unwrap();
        assert_eq!(
            request.messages[0].content,
            [
                Part::Text(TextPart {
                    text: "long doc".into(),
                    cache: Some(json!({"type": "ephemeral", "ttl": "1h"})),
                }),
                Part::Image(Image {
                    source: ImageSource::Url("https://x.test/a.png".into()),
                    cache: Some(json!({"type": "ephemeral"})),
                }),
            ]
        );
    }

    #[test]
    fn refuses_requests_of_another_shape_with_the_path() {
        let cases = [
            (json!({"model": "m", "messages": {}}), "messages: expected an array"),
            (
                json!({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}),
                "messages[1].role: unknown role 'robot'",
            ),
            (json!({"messages": [{"content": "a"}]}), "messages[0].role: missing"),
            (
                json!({"messages": [{"role": "tool", "content": "a"}]}),
                "messages[0].tool_call_id: missing",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url",
                    "image_url": {"url": "file:///etc/passwd"}}]}]}),
                "messages[0].content[0].image_url.url: expected an http(s) URL or a base64 data URL",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url",
                    "image_url": {"url": "data:image/png,rawbytes"}}]}]}),
                "messages[0].content[0].image_url.url: expected an http(s) URL or a base64 data URL",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "messages[0].content: expected a string or an array",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function",
                    "function": {"name": "f"}}]}]}),
                "messages[0].tool_calls[0].id: missing",
            ),
            (
                json!({"messages": [], "tool_choice": "sometimes"}),
                "tool_choice: unknown value 'sometimes'",
            ),
            (json!({"messages": [], "max_tokens": -1}), "max_tokens: expected a non-negative integer"),
            (json!({"messages": [], "stream": "yes"}), "stream: expected a boolean"),
            (json!({"messages": [], "stop": [1]}), "stop[0]: expected a string"),
            (
                json!({"messages": [], "tools": [{"type": "function"}]}),
                "tools[0].function: expected an object",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(decode(body).0, Err(Invalid::new(message)));
        }
    }

    #[test]
    fn encodes_a_request_for_chat_providers() {
        let request = Request {
            model: "gpt-4o".into(),
            system: vec![plain("Be brief."), plain("Use metric units.")],
            messages: vec![
                user(vec![
                    text("What is this?"),
                    Part::Image(Image {
                        source: ImageSource::Base64 {
                            media_type: "image/jpeg".into(),
                            data: "/9j/4AAQ".into(),
                        },
                        cache: None,
                    }),
                ]),
                assistant(vec![
                    Part::Thinking {
                        text: "hmm".into(),
                        signature: Some("sig".into()),
                    },
                    Part::RedactedThinking { data: "xx".into() },
                    call("toolu_01", "lookup", r#"{"q":"cat"}"#),
                ]),
                user(vec![
                    Part::ToolResult {
                        id: "toolu_01".into(),
                        content: vec![
                            text("a cat"),
                            text("probably"),
                            Part::Image(Image {
                                source: ImageSource::Url("https://x.test/c.png".into()),
                                cache: None,
                            }),
                        ],
                        is_error: true,
                    },
                    Part::Text(cached("Thanks")),
                ]),
            ],
            tools: vec![Tool {
                cache: Some(json!({"type": "ephemeral"})),
                ..weather_tool()
            }],
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(true),
            max_tokens: Some(1024),
            stop: vec!["###".into()],
            stream: true,
            reasoning: Some(Reasoning {
                budget_tokens: Some(10_000),
                effort: None,
            }),
            user: Some("u-1".into()),
            ..Request::default()
        };
        let (body, removed) = encode(&request);
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nUse metric units."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "toolu_01", "type": "function",
                         "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "toolu_01", "content": "a cat\n\nprobably"},
                    {"role": "user", "content": "Thanks"}
                ],
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "Current weather", "strict": true,
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"]}}}],
                "tool_choice": "required",
                "parallel_tool_calls": true,
                "max_tokens": 1024,
                "stop": ["###"],
                "stream": true,
                "stream_options": {"include_usage": true},
                "reasoning_effort": "medium",
                "user": "u-1"
            })
        );
        assert_eq!(
            removed,
            [
                "cache_control",
                "thinking",
                "messages[2].content[0].is_error",
                "messages[2].content[0].content[2].type=image",
            ]
        );
    }

    #[test]
    fn encodes_minimal_requests_without_optional_fields() {
        let request = Request {
            model: "m".into(),
            system: vec![cached("cached system")],
            messages: vec![user(vec![text("hi")]), assistant(vec![])],
            tool_choice: Some(ToolChoice::Auto),
            parallel_tool_calls: Some(false),
            ..Request::default()
        };
        let (body, removed) = encode(&request);
        assert_eq!(
            body,
            json!({"model": "m", "messages": [
                {"role": "system", "content": "cached system"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": ""}
            ]})
        );
        assert_eq!(
            removed,
            ["cache_control", "tool_choice", "parallel_tool_calls"]
        );
    }

    #[test]
    fn encodes_each_tool_choice() {
        let choices = [
            (ToolChoice::Auto, json!("auto")),
            (ToolChoice::None, json!("none")),
            (ToolChoice::Required, json!("required")),
            (
                ToolChoice::Tool("get_weather".into()),
                json!({"type": "function", "function": {"name": "get_weather"}}),
            ),
        ];
        for (choice, expected) in choices {
            let request = Request {
                tools: vec![weather_tool()],
                tool_choice: Some(choice.clone()),
                ..Request::default()
            };
            let (body, _) = encode(&request);
            assert_eq!(body["tool_choice"], expected);
            let (decoded, _) = decode(body);
            assert_eq!(decoded.unwrap().tool_choice, Some(choice));
        }
    }

    #[test]
    fn decodes_an_openai_answer_with_tool_calls_and_cached_tokens() {
        let response = Chat::decode_response(&json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": null,
                    "tool_calls": [{"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
                    "annotations": []
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {
                "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035"
        }))
        .unwrap();
        assert_eq!(
            response,
            Response {
                id: "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG".into(),
                model: "gpt-4o-2024-08-06".into(),
                created: 1741570283,
                content: vec![
                    text("Let me check."),
                    call(
                        "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "get_weather",
                        r#"{"city":"Paris"}"#
                    ),
                ],
                finish: Some(Finish::ToolUse),
                usage: Usage {
                    input: 1117,
                    output: 46,
                    cache_read: 1024,
                    cache_write: 0,
                    reasoning: 12,
                },
            }
        );
    }

    #[test]
    fn decodes_deepseek_reasoning_and_cache_hits() {
        let response = Chat::decode_response(&json!({
            "id": "a1b2", "object": "chat.completion", "created": 1737000000,
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "finish_reason": "length", "message": {
                "role": "assistant", "content": "9.11 < 9.9", "reasoning_content": "Compare decimals."}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 60, "total_tokens": 80,
                "prompt_cache_hit_tokens": 16, "prompt_cache_miss_tokens": 4}
        }))
        .unwrap();
        assert_eq!(
            response.content,
            [
                Part::Thinking {
                    text: "Compare decimals.".into(),
                    signature: None
                },
                text("9.11 < 9.9"),
            ]
        );
        assert_eq!(response.finish, Some(Finish::Length));
        assert_eq!(response.usage.cache_read, 16);
        assert_eq!(response.usage.input, 20);
    }

    #[test]
    fn a_refusal_is_the_answer_text() {
        let response = Chat::decode_response(&json!({
            "id": "x", "model": "gpt-4o", "created": 1,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": null, "refusal": "I can't help with that."}}]
        }))
        .unwrap();
        assert_eq!(response.content, [text("I can't help with that.")]);
        assert_eq!(response.usage, Usage::default());
    }

    #[test]
    fn maps_finish_reasons() {
        for (reason, finish) in [
            ("stop", Finish::Stop),
            ("length", Finish::Length),
            ("tool_calls", Finish::ToolUse),
            ("function_call", Finish::ToolUse),
            ("content_filter", Finish::ContentFilter),
        ] {
            assert_eq!(decode_finish(reason), finish);
        }
        for (finish, reason) in [
            (Finish::Stop, "stop"),
            (Finish::Pause, "stop"),
            (Finish::StopSequence(Some("END".into())), "stop"),
            (Finish::Length, "length"),
            (Finish::ToolUse, "tool_calls"),
            (Finish::ContentFilter, "content_filter"),
        ] {
            assert_eq!(encode_finish(&finish), reason);
        }
    }

    #[test]
    fn refuses_answers_of_another_shape() {
        assert_eq!(
            Chat::decode_response(&json!({"type": "message", "content": []})),
            Err(Invalid::new("choices: expected an array"))
        );
        assert_eq!(
            Chat::decode_response(&json!({"choices": [{"index": 0}]})),
            Err(Invalid::new("choices[0].message: expected an object"))
        );
    }

    #[test]
    fn encodes_an_answer() {
        let response = Response {
            id: "msg_01XFDUDYJgAACzvnptvVoYEL".into(),
            model: "claude-sonnet-4-5".into(),
            created: 1_700_000_000,
            content: vec![
                Part::Thinking {
                    text: "The user wants".into(),
                    signature: Some("EqQBCgIYAh".into()),
                },
                Part::RedactedThinking { data: "xx".into() },
                Part::Thinking {
                    text: " weather.".into(),
                    signature: None,
                },
                text("Checking "),
                text("now."),
                call("toolu_01A", "get_weather", r#"{"city":"Paris"}"#),
            ],
            finish: Some(Finish::ToolUse),
            usage: Usage {
                input: 2095,
                output: 503,
                cache_read: 2000,
                cache_write: 50,
                reasoning: 0,
            },
        };
        assert_eq!(
            Chat::encode_response(&response),
            json!({
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "claude-sonnet-4-5",
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Checking now.",
                        "reasoning_content": "The user wants weather.",
                        "tool_calls": [{"id": "toolu_01A", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
                    },
                    "logprobs": null,
                    "finish_reason": "tool_calls"
                }],
                "usage": {
                    "prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598,
                    "prompt_tokens_details": {"cached_tokens": 2000},
                    "completion_tokens_details": {"reasoning_tokens": 0}
                }
            })
        );
    }

    #[test]
    fn an_answer_of_tool_calls_only_has_null_content() {
        let response = Response {
            content: vec![call("c", "f", "{}")],
            finish: Some(Finish::ToolUse),
            ..Response::default()
        };
        let body = Chat::encode_response(&response);
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        let empty = Chat::encode_response(&Response {
            finish: Some(Finish::Pause),
            ..Response::default()
        });
        assert_eq!(empty["choices"][0]["message"]["content"], "");
        assert_eq!(empty["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            Chat::decode_response(&body).unwrap().content,
            response.content
        );
    }

    // -----------------------------------------------------------------------------------------
    // Streams.

    fn decode_stream(events: &[&str]) -> Vec<Delta> {
        let mut decoder = ChatDecoder::default();
        let mut out = Vec::new();
        for data in events {
            decoder.event(None, data, &mut out);
        }
        out
    }

    fn encode_stream(include_usage: bool, deltas: Vec<Delta>) -> Vec<String> {
        let mut encoder = ChatEncoder::new(include_usage);
        let mut out = Vec::new();
        for delta in deltas {
            encoder.delta(delta, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
        text.split_terminator("\n\n")
            .map(|event| event.strip_prefix("data: ").unwrap().to_owned())
            .collect()
    }

    fn start() -> Delta {
        Delta::Start {
            id: "chatcmpl-1".into(),
            model: "gpt-4o".into(),
            created: 1_700_000_000,
        }
    }

    /// A chunk as the encoder writes it.
    fn chunk(delta: Value, finish_reason: Value) -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    }

    fn parse(events: &[String]) -> Vec<Value> {
        events
            .iter()
            .map(|event| serde_json::from_str(event).unwrap_or(Value::String(event.clone())))
            .collect()
    }

    const OPENAI_TEXT: &[&str] = &[
        r#"{"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" there!"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[],"usage":{"prompt_tokens":1200,"completion_tokens":3,"total_tokens":1203,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
        "[DONE]",
    ];

    #[test]
    fn decodes_an_openai_text_stream() {
        assert_eq!(
            decode_stream(OPENAI_TEXT),
            [
                Delta::Start {
                    id: "chatcmpl-AbC".into(),
                    model: "gpt-4o-mini-2024-07-18".into(),
                    created: 1741570283,
                },
                Delta::Text("Hello".into()),
                Delta::Text(" there!".into()),
                Delta::Finish(Finish::Stop),
                Delta::Usage(Usage {
                    input: 1200,
                    output: 3,
                    cache_read: 1024,
                    ..Usage::default()
                }),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn decodes_parallel_tool_calls() {
        let head = r#"{"id":"chatcmpl-T","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":"#;
        let events: Vec<String> = [
            r#"[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Pa"}}]},"logprobs":null,"finish_reason":null}]"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]},"logprobs":null,"finish_reason":null}]"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]"#,
            r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]"#,
        ]
        .iter()
        .map(|choices| format!("{head}{choices}}}"))
        .chain(["[DONE]".to_owned()])
        .collect();
        let events: Vec<&str> = events.iter().map(String::as_str).collect();
        assert_eq!(
            decode_stream(&events)[1..],
            [
                Delta::ToolCall {
                    index: 0,
                    id: "call_A".into(),
                    name: "get_weather".into()
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: "{\"city\": \"Pa".into()
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: "ris\"}".into()
                },
                Delta::ToolCall {
                    index: 1,
                    id: "call_B".into(),
                    name: "get_time".into()
                },
                Delta::ToolArguments {
                    index: 1,
                    fragment: "{}".into()
                },
                Delta::Finish(Finish::ToolUse),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn decodes_tool_calls_without_an_index_or_sent_whole() {
        let events = [
            r#"{"id":"g","model":"gemini-2.5-flash","created":2,"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"id":"fc_1","type":"function","function":{"name":"a","arguments":"{\"x\":1}"}},{"id":"fc_2","type":"function","function":{"name":"b","arguments":"{"}}]}}]}"#,
            r#"{"id":"g","model":"gemini-2.5-flash","created":2,"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"}"}}]}}]}"#,
            // Some servers repeat the id on every fragment.
            r#"{"id":"g","model":"gemini-2.5-flash","created":2,"choices":[{"index":0,"delta":{"tool_calls":[{"index":5,"id":"fc_3","function":{"name":"c","arguments":""}}]}}]}"#,
            r#"{"id":"g","model":"gemini-2.5-flash","created":2,"choices":[{"index":0,"delta":{"tool_calls":[{"index":5,"id":"fc_3","function":{"arguments":"{}"}}]}}]}"#,
        ];
        assert_eq!(
            decode_stream(&events)[1..],
            [
                Delta::ToolCall {
                    index: 0,
                    id: "fc_1".into(),
                    name: "a".into()
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: "{\"x\":1}".into()
                },
                Delta::ToolCall {
                    index: 1,
                    id: "fc_2".into(),
                    name: "b".into()
                },
                Delta::ToolArguments {
                    index: 1,
                    fragment: "{".into()
                },
                Delta::ToolArguments {
                    index: 1,
                    fragment: "}".into()
                },
                Delta::ToolCall {
                    index: 2,
                    id: "fc_3".into(),
                    name: "c".into()
                },
                Delta::ToolArguments {
                    index: 2,
                    fragment: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn decodes_reasoning_deltas_and_running_usage() {
        let events = [
            r#"{"id":"ds","object":"chat.completion.chunk","created":3,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"finish_reason":null}]}"#,
            r#"{"id":"ds","object":"chat.completion.chunk","created":3,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Think"},"finish_reason":null}]}"#,
            // vLLM's newer name; OpenRouter sends both names with the same text.
            r#"{"id":"ds","object":"chat.completion.chunk","created":3,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"reasoning":"ing"},"finish_reason":null}]}"#,
            r#"{"id":"ds","object":"chat.completion.chunk","created":3,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"reasoning":".","reasoning_content":"."},"finish_reason":null}],"usage":{"prompt_tokens":10,"completion_tokens":4}}"#,
            r#"{"id":"ds","object":"chat.completion.chunk","created":3,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":"42"},"finish_reason":"stop"}],"usage":{"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":3},"prompt_cache_hit_tokens":8}}"#,
            r#"{"id":"ds","object":"chat.completion.chunk","created":3,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ];
        assert_eq!(
            decode_stream(&events)[1..],
            [
                Delta::Thinking("Think".into()),
                Delta::Thinking("ing".into()),
                Delta::Thinking(".".into()),
                Delta::Usage(Usage {
                    input: 10,
                    output: 4,
                    ..Usage::default()
                }),
                Delta::Text("42".into()),
                Delta::Finish(Finish::Stop),
                Delta::Usage(Usage {
                    input: 10,
                    output: 5,
                    cache_read: 8,
                    cache_write: 0,
                    reasoning: 3,
                }),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn decodes_errors_and_nothing_after_them() {
        let error = r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            decode_stream(&[OPENAI_TEXT[0], error, OPENAI_TEXT[1], "[DONE]"])[1..],
            [Delta::Error {
                kind: "rate_limit_error".into(),
                message: "Rate limit reached".into()
            }]
        );
        let mut decoder = ChatDecoder::default();
        let mut out = Vec::new();
        decoder.event(
            Some("error"),
            r#"{"message":"overloaded","code":"overloaded"}"#,
            &mut out,
        );
        assert_eq!(
            out,
            [Delta::Error {
                kind: "overloaded".into(),
                message: "overloaded".into()
            }]
        );
        assert_eq!(
            decode_stream(&[r#"{"error":"upstream gone"}"#]),
            [Delta::Error {
                kind: "api_error".into(),
                message: "upstream gone".into()
            }]
        );
    }

    #[test]
    fn ignores_malformed_and_empty_events_and_repeats_after_done() {
        let deltas = decode_stream(&[
            "{not json",
            "",
            OPENAI_TEXT[0],
            r#"{"id":"chatcmpl-AbC","choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
            "[DONE]",
            OPENAI_TEXT[1],
            "[DONE]",
        ]);
        assert_eq!(deltas.len(), 2);
        assert!(matches!(deltas[0], Delta::Start { .. }));
        assert_eq!(deltas[1], Delta::Done);
    }

    #[test]
    fn encodes_a_text_stream_with_the_usage_chunk_last() {
        let usage = Usage {
            input: 30,
            output: 7,
            cache_read: 10,
            cache_write: 5,
            reasoning: 2,
        };
        let deltas = vec![
            start(),
            Delta::Thinking("Hmm.".into()),
            Delta::ThinkingSignature("sig".into()),
            Delta::Text("Hi".into()),
            Delta::Text(String::new()),
            Delta::Text("!".into()),
            Delta::Finish(Finish::StopSequence(Some("END".into()))),
            Delta::Usage(usage),
            Delta::Done,
        ];
        let events = encode_stream(true, deltas.clone());
        assert_eq!(
            parse(&events),
            [
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(json!({"reasoning_content": "Hmm."}), Value::Null),
                chunk(json!({"content": "Hi"}), Value::Null),
                chunk(json!({"content": "!"}), Value::Null),
                chunk(json!({}), json!("stop")),
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                    "created": 1_700_000_000, "model": "gpt-4o", "choices": [],
                    "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
                        "prompt_tokens_details": {"cached_tokens": 10},
                        "completion_tokens_details": {"reasoning_tokens": 2}}}),
                json!("[DONE]"),
            ]
        );
        let without_usage = encode_stream(false, deltas);
        assert_eq!(without_usage.len(), events.len() - 1);
        assert_eq!(without_usage.last().unwrap(), "[DONE]");
        assert!(!without_usage.iter().any(|event| event.contains("usage")));
    }

    #[test]
    fn encodes_tool_call_chunks() {
        let events = encode_stream(
            false,
            vec![
                start(),
                Delta::Usage(Usage {
                    input: 5,
                    ..Usage::default()
                }),
                Delta::ToolCall {
                    index: 0,
                    id: "toolu_01".into(),
                    name: "get_weather".into(),
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: "{\"city\":".into(),
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: "\"Paris\"}".into(),
                },
                Delta::ToolCall {
                    index: 1,
                    id: "toolu_02".into(),
                    name: "get_time".into(),
                },
                Delta::Finish(Finish::ToolUse),
                Delta::Done,
            ],
        );
        assert_eq!(
            parse(&events),
            [
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(
                    json!({"tool_calls": [{"index": 0, "id": "toolu_01", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    Value::Null
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                    Value::Null
                ),
                chunk(
                    json!({"tool_calls": [{"index": 1, "id": "toolu_02", "type": "function",
                        "function": {"name": "get_time", "arguments": ""}}]}),
                    Value::Null
                ),
                chunk(json!({}), json!("tool_calls")),
                json!("[DONE]"),
            ]
        );
    }

    #[test]
    fn an_error_ends_the_stream() {
        let events = encode_stream(
            true,
            vec![
                start(),
                Delta::Text("partial".into()),
                Delta::Error {
                    kind: "overloaded_error".into(),
                    message: "Overloaded".into(),
                },
                Delta::Finish(Finish::Stop),
                Delta::Done,
            ],
        );
        assert_eq!(events.len(), 3);
        assert_eq!(
            parse(&events)[2],
            json!({"error": {"type": "overloaded_error", "message": "Overloaded",
                "code": "overloaded_error"}})
        );
    }

    #[test]
    fn a_stream_without_done_has_no_final_event() {
        let events = encode_stream(
            true,
            vec![
                start(),
                Delta::Text("cut".into()),
                Delta::Finish(Finish::Length),
                Delta::Usage(Usage::default()),
            ],
        );
        assert_eq!(events.len(), 3);
        assert!(!events
            .iter()
            .any(|event| event == "[DONE]" || event.contains("usage")));
    }

    #[test]
    fn the_decoder_reads_back_what_the_encoder_writes() {
        let deltas = vec![
            start(),
            Delta::Thinking("plan".into()),
            Delta::Text("Calling.".into()),
            Delta::ToolCall {
                index: 0,
                id: "call_9".into(),
                name: "f".into(),
            },
            Delta::ToolArguments {
                index: 0,
                fragment: "{\"a\":1}".into(),
            },
            Delta::Finish(Finish::ToolUse),
            Delta::Usage(Usage {
                input: 9,
                output: 4,
                cache_read: 3,
                cache_write: 0,
                reasoning: 1,
            }),
            Delta::Done,
        ];
        let events = encode_stream(true, deltas.clone());
        let events: Vec<&str> = events.iter().map(String::as_str).collect();
        assert_eq!(decode_stream(&events), deltas);
    }
}
