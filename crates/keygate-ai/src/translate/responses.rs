//! The OpenAI Responses format (`POST /v1/responses`), used statelessly: the client sends the
//! whole conversation in `input` (`store: false`), as Codex CLI does.
//!
//! Requests, whole answers and SSE streams convert to and from the neutral types of
//! [`super::ir`]. Reasoning items are read (their summaries become thinking text, their
//! `encrypted_content` the thinking signature) and written in answers, but never sent to a
//! provider: OpenAI only accepts `encrypted_content` it produced itself, and the neutral types do
//! not say which provider a signature came from.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::ir::{
    Codec, Delta, Finish, Image, ImageSource, Invalid, Message, Part, Reasoning, Removed, Request,
    Response, Role, StreamDecoder, StreamEncoder, TextPart, Tool, ToolChoice, Usage,
};
use super::{parse_object, sse_write, Str};
use crate::sse::error_event;
use crate::Surface;

/// The OpenAI Responses format.
pub struct Responses;

/// Top-level request keys this codec reads. `store` and `include` are consumed without a
/// note: a stateless client sends `store: false` and asks for encrypted reasoning, neither of
/// which means anything to another format.
const KNOWN_REQUEST: &[&str] = &[
    "model",
    "instructions",
    "input",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "reasoning",
    "user",
    "safety_identifier",
    "store",
    "include",
];

/// OpenAI rejects `max_output_tokens` below this.
const MIN_OUTPUT_TOKENS: u64 = 16;

impl Codec for Responses {
    fn decode_request(
        body: &Map<String, Value>,
        removed: &mut Removed,
    ) -> Result<Request, Invalid> {
        removed.note_unknown(body, KNOWN_REQUEST);
        let mut request = Request {
            model: required_string(body, "model", "")?,
            ..Request::default()
        };
        if let Some(text) = string(body, "instructions", "")? {
            request.system.push(TextPart { text, cache: None });
        }
        decode_input(body.get("input"), &mut request, removed)?;
        request.tools = decode_tools(get(body, "tools"), removed)?;
        request.tool_choice = decode_tool_choice(get(body, "tool_choice"), removed)?;
        request.parallel_tool_calls = boolean(body, "parallel_tool_calls", "")?;
        request.max_tokens = unsigned(body, "max_output_tokens", "")?;
        request.temperature = number(body, "temperature", "")?;
        request.top_p = number(body, "top_p", "")?;
        request.stream = boolean(body, "stream", "")?.unwrap_or(false);
        request.reasoning = decode_reasoning(get(body, "reasoning"))?;
        request.user = decode_user(body, removed)?;
        Ok(request)
    }

    fn encode_request(request: &Request, removed: &mut Removed) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("model".into(), request.model.clone().into());
        if !request.system.is_empty() {
            note_cache(request.system.iter().map(|part| &part.cache), removed);
            let texts: Vec<&str> = request.system.iter().map(|p| p.text.as_str()).collect();
            body.insert("instructions".into(), texts.join("\n\n").into());
        }
        body.insert(
            "input".into(),
            encode_input(&request.messages, removed).into(),
        );
        if request.tools.is_empty() {
            // Tool settings without tools mean nothing, and strict servers refuse them.
            if request.tool_choice.is_some() {
                removed.note("tool_choice");
            }
            if request.parallel_tool_calls.is_some() {
                removed.note("parallel_tool_calls");
            }
        } else {
            note_cache(request.tools.iter().map(|tool| &tool.cache), removed);
            let tools = request.tools.iter().map(encode_tool).collect::<Vec<_>>();
            body.insert("tools".into(), tools.into());
            if let Some(choice) = &request.tool_choice {
                body.insert("tool_choice".into(), encode_tool_choice(choice));
            }
            if let Some(parallel) = request.parallel_tool_calls {
                body.insert("parallel_tool_calls".into(), parallel.into());
            }
        }
        if let Some(max) = request.max_tokens {
            body.insert(
                "max_output_tokens".into(),
                max.max(MIN_OUTPUT_TOKENS).into(),
            );
        }
        if let Some(temperature) = request.temperature {
            body.insert("temperature".into(), temperature.into());
        }
        if let Some(top_p) = request.top_p {
            body.insert("top_p".into(), top_p.into());
        }
        if !request.stop.is_empty() {
            removed.note("stop");
        }
        if let Some(reasoning) = &request.reasoning {
            body.insert("reasoning".into(), json!({"effort": reasoning.effort()}));
        }
        if let Some(user) = &request.user {
            body.insert("user".into(), user.clone().into());
        }
        body.insert("store".into(), false.into());
        if request.stream {
            body.insert("stream".into(), true.into());
        }
        body
    }

    fn decode_response(body: &Value) -> Result<Response, Invalid> {
        let body = body
            .as_object()
            .ok_or_else(|| Invalid::new("response: expected an object"))?;
        let items = match get(body, "output") {
            None => &[][..],
            Some(Value::Array(items)) => items.as_slice(),
            Some(_) => return Err(Invalid::new("output: expected an array")),
        };
        let mut answer = Answer::default();
        for item in items {
            answer.item(item);
        }
        let calls = answer.content.iter().any(is_tool_call);
        Ok(Response {
            id: text_of(body, "id").to_owned(),
            model: text_of(body, "model").to_owned(),
            created: created_at(body),
            finish: finish_of(body, None, calls, answer.refused),
            usage: get(body, "usage").map(decode_usage).unwrap_or_default(),
            content: answer.content,
        })
    }

    fn encode_response(response: &Response) -> Value {
        let head = Head {
            id: response.id.clone(),
            model: response.model.clone(),
            created: response.created,
        };
        let mut output: Vec<Value> = Vec::new();
        let mut texts: Vec<Value> = Vec::new();
        for part in &response.content {
            match part {
                Part::Text(text) => texts.push(output_text(&text.text)),
                // The signature goes out even when another provider made it: the client sends
                // the item back as it is, and that provider needs it on the next turn.
                Part::Thinking { text, signature } => {
                    flush_message(&head, &mut texts, &mut output);
                    let id = head.item_id("rs", output.len());
                    output.push(reasoning_item(&id, text, signature.as_deref()));
                }
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    flush_message(&head, &mut texts, &mut output);
                    output.push(function_call_item(id, name, arguments, "completed"));
                }
                // Nothing in a Responses answer carries these.
                Part::Image(_) | Part::RedactedThinking { .. } | Part::ToolResult { .. } => {}
            }
        }
        flush_message(&head, &mut texts, &mut output);
        let outcome = Outcome::of(response.finish.as_ref());
        if let Some(last) = output.last_mut().and_then(Value::as_object_mut) {
            if last.contains_key("status") {
                last.insert("status".into(), outcome.item_status().into());
            }
        }
        head.response(
            outcome.status,
            outcome.reason,
            output,
            Some(&response.usage),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Request decoding

/// `value` unless it is absent or `null` (clients send `null` for "not set").
fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// The dotted path of `key` inside the object at `at` (`""` for the top level).
fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn expected(at: &str, key: &str, what: &str) -> Invalid {
    Invalid::new(format!("{}: expected {what}", path(at, key)))
}

fn string(object: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, Invalid> {
    match get(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(expected(at, key, "a string")),
    }
}

fn required_string(object: &Map<String, Value>, key: &str, at: &str) -> Result<String, Invalid> {
    string(object, key, at)?.ok_or_else(|| expected(at, key, "a string"))
}

fn boolean(object: &Map<String, Value>, key: &str, at: &str) -> Result<Option<bool>, Invalid> {
    get(object, key)
        .map(|value| {
            value
                .as_bool()
                .ok_or_else(|| expected(at, key, "a boolean"))
        })
        .transpose()
}

fn number(object: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>, Invalid> {
    get(object, key)
        .map(|value| value.as_f64().ok_or_else(|| expected(at, key, "a number")))
        .transpose()
}

fn unsigned(object: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u64>, Invalid> {
    get(object, key)
        .map(|value| {
            value
                .as_u64()
                .ok_or_else(|| expected(at, key, "a non-negative integer"))
        })
        .transpose()
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Invalid> {
    value
        .as_object()
        .ok_or_else(|| Invalid::new(format!("{at}: expected an object")))
}

fn text_part(text: String) -> Part {
    Part::Text(TextPart { text, cache: None })
}

fn decode_input(
    input: Option<&Value>,
    request: &mut Request,
    removed: &mut Removed,
) -> Result<(), Invalid> {
    match input {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) => {
            request.messages.push(Message {
                role: Role::User,
                content: vec![text_part(text.clone())],
            });
            Ok(())
        }
        Some(Value::Array(items)) => items.iter().enumerate().try_for_each(|(i, item)| {
            decode_item(object(item, &format!("input[{i}]"))?, i, request, removed)
        }),
        Some(_) => Err(Invalid::new(
            "input: expected a string or an array of items",
        )),
    }
}

/// Reads input item number `i` into `request`.
fn decode_item(
    item: &Map<String, Value>,
    i: usize,
    request: &mut Request,
    removed: &mut Removed,
) -> Result<(), Invalid> {
    let at = format!("input[{i}]");
    match string(item, "type", &at)?.as_deref() {
        None | Some("message") => decode_message(item, &at, request, removed),
        Some("function_call") => {
            let call = Part::ToolCall {
                id: required_string(item, "call_id", &at)?,
                name: required_string(item, "name", &at)?,
                arguments: string(item, "arguments", &at)?.unwrap_or_default(),
            };
            push_part(&mut request.messages, Role::Assistant, call);
            Ok(())
        }
        Some("function_call_output") => {
            let result = Part::ToolResult {
                id: required_string(item, "call_id", &at)?,
                content: decode_tool_output(item, &at, removed)?,
                is_error: false,
            };
            push_part(&mut request.messages, Role::User, result);
            Ok(())
        }
        Some("reasoning") => {
            if let Some(thinking) = reasoning_thinking(item) {
                push_part(&mut request.messages, Role::Assistant, thinking);
            }
            Ok(())
        }
        // Built-in tool calls and their outputs, references to stored items, ...
        Some(other) => {
            removed.note(format!("{at}.type={other}"));
            Ok(())
        }
    }
}

/// Appends `part` to the conversation: assistant items in a row (text, reasoning, calls) are
/// one assistant turn, and tool outputs in a row are one user turn.
fn push_part(messages: &mut Vec<Message>, role: Role, part: Part) {
    if let Some(last) = messages.last_mut().filter(|last| last.role == role) {
        let results_in_a_row = matches!(
            (last.content.last(), &part),
            (Some(Part::ToolResult { .. }), Part::ToolResult { .. })
        );
        if role == Role::Assistant || results_in_a_row {
            last.content.push(part);
            return;
        }
    }
    messages.push(Message {
        role,
        content: vec![part],
    });
}

fn decode_message(
    item: &Map<String, Value>,
    at: &str,
    request: &mut Request,
    removed: &mut Removed,
) -> Result<(), Invalid> {
    let role = required_string(item, "role", at)?;
    let (content, field) = (get(item, "content"), path(at, "content"));
    match role.as_str() {
        "system" | "developer" => {
            for part in decode_content(content, &field, false, removed)? {
                if let Part::Text(text) = part {
                    request.system.push(text);
                }
            }
        }
        "user" => {
            let content = decode_content(content, &field, true, removed)?;
            if !content.is_empty() {
                request.messages.push(Message {
                    role: Role::User,
                    content,
                });
            }
        }
        "assistant" => {
            for part in decode_content(content, &field, true, removed)? {
                push_part(&mut request.messages, Role::Assistant, part);
            }
        }
        other => {
            return Err(Invalid::new(format!(
                "{at}.role: expected user, assistant, system or developer, got {other:?}"
            )))
        }
    }
    Ok(())
}

/// A message's content (the field at path `field`): a string, or an array of text, refusal
/// and image parts. Files (and images where `images` is false) are dropped and noted.
fn decode_content(
    content: Option<&Value>,
    field: &str,
    images: bool,
    removed: &mut Removed,
) -> Result<Vec<Part>, Invalid> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => return Ok(vec![text_part(text.clone())]),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(Invalid::new(format!(
                "{field}: expected a string or an array of parts"
            )))
        }
    };
    let mut content = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{field}[{j}]");
        let part = object(part, &at)?;
        let decoded = match required_string(part, "type", &at)?.as_str() {
            "input_text" | "output_text" => Some(text_part(required_string(part, "text", &at)?)),
            "refusal" => Some(text_part(required_string(part, "refusal", &at)?)),
            "input_image" if images => decode_image(part, &at, removed)?.map(Part::Image),
            other => {
                removed.note(format!("{at}.type={other}"));
                None
            }
        };
        content.extend(decoded);
    }
    Ok(content)
}

/// An `input_image` part; `None` (noted) for an uploaded file (`file_id`), which only OpenAI
/// can resolve.
fn decode_image(
    part: &Map<String, Value>,
    at: &str,
    removed: &mut Removed,
) -> Result<Option<Image>, Invalid> {
    if string(part, "detail", at)?.is_some_and(|detail| detail != "auto") {
        removed.note(path(at, "detail"));
    }
    let Some(url) = string(part, "image_url", at)? else {
        removed.note(path(at, "file_id"));
        return Ok(None);
    };
    let source = match url.strip_prefix("data:") {
        None => ImageSource::Url(url),
        Some(data_url) => {
            let (media_type, data) = data_url
                .split_once(',')
                .and_then(|(meta, data)| Some((meta.strip_suffix(";base64")?, data)))
                .ok_or_else(|| expected(at, "image_url", "an http(s) or base64 data URL"))?;
            ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            }
        }
    };
    Ok(Some(Image {
        source,
        cache: None,
    }))
}

/// A `function_call_output`'s `output`: text, or an array of text and image parts.
fn decode_tool_output(
    item: &Map<String, Value>,
    at: &str,
    removed: &mut Removed,
) -> Result<Vec<Part>, Invalid> {
    match get(item, "output") {
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        output => decode_content(output, &path(at, "output"), true, removed),
    }
}

/// The thinking of a reasoning item: its summaries (or, from open-weight models, its raw
/// reasoning text) and its `encrypted_content`; `None` when it carries neither.
fn reasoning_thinking(item: &Map<String, Value>) -> Option<Part> {
    let texts = |key: &str| -> Vec<&str> {
        get(item, key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect()
    };
    let mut text = texts("summary").join("\n\n");
    if text.is_empty() {
        text = texts("content").join("\n\n");
    }
    let signature = get(item, "encrypted_content")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (!text.is_empty() || signature.is_some()).then_some(Part::Thinking { text, signature })
}

fn decode_tools(tools: Option<&Value>, removed: &mut Removed) -> Result<Vec<Tool>, Invalid> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| Invalid::new("tools: expected an array"))?;
    let mut decoded = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let tool = object(tool, &at)?;
        if required_string(tool, "type", &at)? != "function" {
            // Built-in tools (web search, file search, computer use, MCP, shell, custom).
            removed.note(at);
            continue;
        }
        decoded.push(Tool {
            name: required_string(tool, "name", &at)?,
            description: string(tool, "description", &at)?,
            parameters: get(tool, "parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: boolean(tool, "strict", &at)?,
            cache: None,
        });
    }
    Ok(decoded)
}

fn decode_tool_choice(
    choice: Option<&Value>,
    removed: &mut Removed,
) -> Result<Option<ToolChoice>, Invalid> {
    let choice = match choice {
        None => return Ok(None),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(Invalid::new(format!(
                    "tool_choice: expected auto, none or required, got {other:?}"
                )))
            }
        },
        Some(Value::Object(choice)) if text_of(choice, "type") == "function" => {
            ToolChoice::Tool(required_string(choice, "name", "tool_choice")?)
        }
        // A built-in tool, a custom tool or an allowed-tools list.
        Some(Value::Object(_)) => {
            removed.note("tool_choice");
            return Ok(None);
        }
        Some(_) => return Err(Invalid::new("tool_choice: expected a string or an object")),
    };
    Ok(Some(choice))
}

/// `reasoning.effort`; `summary` has no counterpart and needs none (thinking is returned
/// wherever the target format returns it). Effort `none` asks for no reasoning at all.
fn decode_reasoning(reasoning: Option<&Value>) -> Result<Option<Reasoning>, Invalid> {
    let Some(reasoning) = reasoning else {
        return Ok(None);
    };
    let effort = string(object(reasoning, "reasoning")?, "effort", "reasoning")?;
    if effort.as_deref() == Some("none") {
        return Ok(None);
    }
    Ok(Some(Reasoning {
        budget_tokens: None,
        effort,
    }))
}

/// `safety_identifier`, or the older `user` it replaces (noted when both differ).
fn decode_user(
    body: &Map<String, Value>,
    removed: &mut Removed,
) -> Result<Option<String>, Invalid> {
    let user = string(body, "user", "")?;
    let Some(safety) = string(body, "safety_identifier", "")? else {
        return Ok(user);
    };
    if user.as_ref().is_some_and(|user| *user != safety) {
        removed.note("user");
    }
    Ok(Some(safety))
}

// ---------------------------------------------------------------------------------------------
// Request encoding

/// Notes `cache_control` once if any of `caches` is set: OpenAI caches prompts by itself.
fn note_cache<'a>(mut caches: impl Iterator<Item = &'a Option<Value>>, removed: &mut Removed) {
    if caches.any(|cache| cache.is_some()) {
        removed.note("cache_control");
    }
}

fn encode_input(messages: &[Message], removed: &mut Removed) -> Vec<Value> {
    let mut items = Vec::new();
    for message in messages {
        match message.role {
            Role::User => encode_user(&message.content, &mut items, removed),
            Role::Assistant => encode_assistant(&message.content, &mut items, removed),
        }
    }
    items
}

/// A message item of `role` holding `content`, when there is any; `content` is emptied.
fn flush_input_message(role: &str, content: &mut Vec<Value>, items: &mut Vec<Value>) {
    if !content.is_empty() {
        let content = std::mem::take(content);
        items.push(json!({"type": "message", "role": role, "content": content}));
    }
}

/// A user turn: text and images as one message item, tool results as `function_call_output`
/// items, in the turn's order.
fn encode_user(parts: &[Part], items: &mut Vec<Value>, removed: &mut Removed) {
    let mut content = Vec::new();
    for part in parts {
        match part {
            Part::Text(text) => {
                note_cache([&text.cache].into_iter(), removed);
                content.push(json!({"type": "input_text", "text": text.text}));
            }
            Part::Image(image) => {
                note_cache([&image.cache].into_iter(), removed);
                content.push(input_image(image));
            }
            Part::ToolResult {
                id,
                content: result,
                is_error,
            } => {
                flush_input_message("user", &mut content, items);
                if *is_error {
                    removed.note("is_error");
                }
                items.push(json!({"type": "function_call_output", "call_id": id,
                    "output": encode_tool_output(result, removed)}));
            }
            Part::Thinking { .. } | Part::RedactedThinking { .. } | Part::ToolCall { .. } => {
                removed.note(format!("user.{}", part_name(part)));
            }
        }
    }
    flush_input_message("user", &mut content, items);
}

/// An assistant turn: text as message items, calls as `function_call` items. Thinking is
/// dropped (see the module doc).
fn encode_assistant(parts: &[Part], items: &mut Vec<Value>, removed: &mut Removed) {
    let mut content = Vec::new();
    for part in parts {
        match part {
            Part::Text(text) => {
                content.push(json!({"type": "output_text", "text": text.text}));
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                flush_input_message("assistant", &mut content, items);
                items.push(json!({"type": "function_call", "call_id": id, "name": name,
                    "arguments": arguments}));
            }
            Part::Thinking { .. } | Part::RedactedThinking { .. } => {
                removed.note(part_name(part));
            }
            Part::Image(_) | Part::ToolResult { .. } => {
                removed.note(format!("assistant.{}", part_name(part)));
            }
        }
    }
    flush_input_message("assistant", &mut content, items);
}

/// The name a dropped part is noted under.
fn part_name(part: &Part) -> &'static str {
    match part {
        Part::Text(_) => "text",
        Part::Image(_) => "image",
        Part::Thinking { .. } => "thinking",
        Part::RedactedThinking { .. } => "redacted_thinking",
        Part::ToolCall { .. } => "tool_call",
        Part::ToolResult { .. } => "tool_result",
    }
}

fn input_image(image: &Image) -> Value {
    let url = match &image.source {
        ImageSource::Url(url) => url.clone(),
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
    };
    json!({"type": "input_image", "image_url": url, "detail": "auto"})
}

/// A tool result's output: its text, or (when it holds images) an array of parts.
fn encode_tool_output(content: &[Part], removed: &mut Removed) -> Value {
    if content.iter().any(|part| matches!(part, Part::Image(_))) {
        let parts = content.iter().filter_map(|part| match part {
            Part::Text(text) => Some(json!({"type": "input_text", "text": text.text})),
            Part::Image(image) => Some(input_image(image)),
            _ => None,
        });
        return Value::Array(parts.collect());
    }
    let texts: Vec<&str> = content
        .iter()
        .filter_map(|part| match part {
            Part::Text(text) => Some(text.text.as_str()),
            other => {
                removed.note(format!("tool_result.{}", part_name(other)));
                None
            }
        })
        .collect();
    texts.join("\n").into()
}

/// A function tool. `strict` is always sent: Responses makes function tools strict by default,
/// which rejects the (non-strict) schemas of clients that did not ask for it.
fn encode_tool(tool: &Tool) -> Value {
    let mut encoded = json!({
        "type": "function",
        "name": tool.name,
        "parameters": tool.parameters,
        "strict": tool.strict.unwrap_or(false),
    });
    if let (Some(description), Some(object)) = (&tool.description, encoded.as_object_mut()) {
        object.insert("description".into(), description.clone().into());
    }
    encoded
}

fn encode_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => "auto".into(),
        ToolChoice::None => "none".into(),
        ToolChoice::Required => "required".into(),
        ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// A string field, `""` when absent or not a string (answers are read leniently).
fn text_of<'a>(object: &'a Map<String, Value>, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

fn created_at(response: &Map<String, Value>) -> u64 {
    let created = response.get("created_at");
    created
        .and_then(Value::as_u64)
        .or_else(|| {
            created
                .and_then(Value::as_f64)
                .map(|seconds| seconds as u64)
        })
        .unwrap_or(0)
}

fn is_tool_call(part: &Part) -> bool {
    matches!(part, Part::ToolCall { .. })
}

/// The content of an answer's output items, read in order.
#[derive(Default)]
struct Answer {
    content: Vec<Part>,
    /// The model refused (a `refusal` part): the answer finishes as filtered.
    refused: bool,
}

impl Answer {
    fn item(&mut self, item: &Value) {
        let Some(item) = item.as_object() else {
            return;
        };
        match text_of(item, "type") {
            "message" => {
                let parts = get(item, "content").and_then(Value::as_array);
                for part in parts.into_iter().flatten() {
                    match part.get("type").and_then(Value::as_str) {
                        Some("output_text") => self.text(part, "text"),
                        Some("refusal") => {
                            self.refused = true;
                            self.text(part, "refusal");
                        }
                        _ => {}
                    }
                }
            }
            "reasoning" => self.content.extend(reasoning_thinking(item)),
            "function_call" => self.content.push(Part::ToolCall {
                id: text_of(item, "call_id").to_owned(),
                name: text_of(item, "name").to_owned(),
                arguments: text_of(item, "arguments").to_owned(),
            }),
            // Built-in tool calls run by OpenAI.
            _ => {}
        }
    }

    fn text(&mut self, part: &Value, key: &str) {
        let text = part.get(key).and_then(Value::as_str).unwrap_or("");
        self.content.push(text_part(text.to_owned()));
    }
}

/// Why the response in `response` stopped. `status` stands in for a missing `status` field;
/// `calls` and `refused` say whether the output holds function calls or a refusal.
fn finish_of(
    response: &Map<String, Value>,
    status: Option<&str>,
    calls: bool,
    refused: bool,
) -> Option<Finish> {
    let status = response.get("status").and_then(Value::as_str).or(status)?;
    match status {
        "completed" if calls => Some(Finish::ToolUse),
        "completed" if refused => Some(Finish::ContentFilter),
        "completed" => Some(Finish::Stop),
        "incomplete" => {
            let reason = response
                .get("incomplete_details")
                .and_then(|details| details.get("reason"))
                .and_then(Value::as_str);
            Some(match reason {
                Some("content_filter") => Finish::ContentFilter,
                _ => Finish::Length,
            })
        }
        // failed, cancelled, queued, in_progress: no finish reason.
        _ => None,
    }
}

fn decode_usage(usage: &Value) -> Usage {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input: count("/input_tokens"),
        output: count("/output_tokens"),
        cache_read: count("/input_tokens_details/cached_tokens"),
        cache_write: count("/input_tokens_details/cache_write_tokens"),
        reasoning: count("/output_tokens_details/reasoning_tokens"),
    }
}

fn encode_usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read,
            "cache_write_tokens": usage.cache_write,
        },
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.input + usage.output,
    })
}

/// The response status a finish maps to.
struct Outcome {
    status: &'static str,
    /// `incomplete_details.reason`.
    reason: Option<&'static str>,
}

impl Outcome {
    fn of(finish: Option<&Finish>) -> Self {
        let (status, reason) = match finish {
            Some(Finish::Length) => ("incomplete", Some("max_output_tokens")),
            Some(Finish::ContentFilter) => ("incomplete", Some("content_filter")),
            _ => ("completed", None),
        };
        Outcome { status, reason }
    }

    /// The status of the item being generated when the response stopped.
    fn item_status(&self) -> &'static str {
        if self.reason.is_some() {
            "incomplete"
        } else {
            "completed"
        }
    }
}

/// What identifies one answer: item ids derive from its id, so the same answer gets the same
/// ids whether it is streamed or not.
#[derive(Debug, Clone, Default)]
struct Head {
    id: String,
    model: String,
    created: u64,
}

impl Head {
    /// The id of output item number `index` (`msg_…`, `rs_…`).
    fn item_id(&self, prefix: &str, index: usize) -> String {
        let base = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{base}_{index}")
    }

    /// The response object, with the echo fields the SDKs read set to their defaults.
    fn response(
        &self,
        status: &str,
        reason: Option<&str>,
        output: Vec<Value>,
        usage: Option<&Usage>,
    ) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": reason.map(|reason| json!({"reason": reason})),
            "instructions": null,
            "max_output_tokens": null,
            "metadata": {},
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null},
            "store": false,
            "temperature": null,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": null,
            "truncation": "disabled",
            "usage": usage.map(encode_usage),
            "user": null,
        })
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": content})
}

/// Ends the message item holding `texts` (when there are any) and appends it to `output`.
fn flush_message(head: &Head, texts: &mut Vec<Value>, output: &mut Vec<Value>) {
    if !texts.is_empty() {
        let id = head.item_id("msg", output.len());
        output.push(message_item(&id, "completed", std::mem::take(texts)));
    }
}

fn summary_text(text: &str) -> Value {
    json!({"type": "summary_text", "text": text})
}

fn reasoning_item(id: &str, text: &str, signature: Option<&str>) -> Value {
    let summary: Vec<Value> = if text.is_empty() {
        Vec::new()
    } else {
        vec![summary_text(text)]
    };
    let mut item = json!({"type": "reasoning", "id": id, "summary": summary});
    if let (Some(signature), Some(item)) = (signature, item.as_object_mut()) {
        item.insert("encrypted_content".into(), signature.into());
    }
    item
}

/// The id of the item of the call `call_id` (calls are identified by their call id).
fn call_item_id(call_id: &str) -> String {
    format!("fc_{call_id}")
}

fn function_call_item(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": call_item_id(call_id), "call_id": call_id,
        "name": name, "arguments": arguments, "status": status})
}

// ---------------------------------------------------------------------------------------------
// Stream decoding

/// Reads a Responses event stream into [`Delta`]s.
#[derive(Debug, Default)]
pub struct ResponsesDecoder {
    started: bool,
    /// A final or error event arrived: nothing more is read.
    ended: bool,
    /// The function calls seen, by tool index.
    calls: Vec<CallSeen>,
    /// The last content delta was thinking: a new summary part starts a new paragraph.
    after_thinking: bool,
    refused: bool,
}

/// A function call item of the stream being decoded.
#[derive(Debug)]
struct CallSeen {
    item_id: Option<String>,
    output_index: Option<u64>,
    /// Some argument text was passed on (so a final `arguments` is not repeated).
    streamed: bool,
}

impl StreamDecoder for ResponsesDecoder {
    fn event(&mut self, name: Option<&str>, data: &str, out: &mut Vec<Delta>) {
        if self.ended {
            return;
        }
        // Text, reasoning and argument deltas, most of a stream, are read without a `Value`.
        if let Some(mut event) = parse_object::<DeltaEvent>(data) {
            let kind = event.kind.take();
            if self.delta(kind.as_deref().or(name).unwrap_or(""), event, out) {
                return;
            }
        }
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let Value::Object(event) = &value else {
            return;
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .or(name)
            .unwrap_or("");
        let response = event.get("response").and_then(Value::as_object);
        match kind {
            "response.created" | "response.queued" | "response.in_progress" => {
                self.start(response, out);
            }
            // A new summary paragraph, or a new reasoning item right after another.
            "response.reasoning_summary_part.added" if self.after_thinking => {
                self.thinking(Str::from("\n\n"), out);
            }
            "response.output_item.added" => self.item_added(event, out),
            "response.function_call_arguments.done" => {
                if let Some(index) = self.call_at(event, None) {
                    let arguments = Str::from(text_of(event, "arguments"));
                    self.arguments_of(index, arguments, true, out);
                }
            }
            "response.output_item.done" => self.item_done(event, out),
            "response.completed" => self.complete(response, "completed", out),
            "response.incomplete" => self.complete(response, "incomplete", out),
            "response.failed" => {
                let error = response.and_then(|r| r.get("error"));
                self.error(error.and_then(Value::as_object), "server_error", out);
            }
            "error" => {
                // OpenAI sends the fields at the top level; some servers nest them in `error`.
                let nested = event.get("error").and_then(Value::as_object);
                self.error(Some(nested.unwrap_or(event)), "api_error", out);
            }
            _ => {
                self.delta(kind, DeltaEvent::of(&value), out);
            }
        }
    }
}

/// A delta event (text, refusal, reasoning, arguments), from the event's text or
/// ([`DeltaEvent::of`]) a `Value`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct DeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    delta: Str<'a>,
    #[serde(borrow)]
    item_id: Option<Str<'a>>,
    output_index: Option<u64>,
}

impl<'a> DeltaEvent<'a> {
    /// The view of an event parsed as a `Value`: a field of another type reads as absent.
    fn of(event: &'a Value) -> Self {
        DeltaEvent {
            kind: None,
            delta: Str::at(event, "delta"),
            item_id: event.get("item_id").and_then(Value::as_str).map(Str::from),
            output_index: event.get("output_index").and_then(Value::as_u64),
        }
    }
}

impl ResponsesDecoder {
    fn start(&mut self, response: Option<&Map<String, Value>>, out: &mut Vec<Delta>) {
        if self.started {
            return;
        }
        self.started = true;
        let empty = Map::new();
        let response = response.unwrap_or(&empty);
        out.push(Delta::Start {
            id: text_of(response, "id").to_owned(),
            model: text_of(response, "model").to_owned(),
            created: created_at(response),
        });
    }

    /// A delta event of kind `kind`; `false` for an event of another kind.
    fn delta(&mut self, kind: &str, event: DeltaEvent, out: &mut Vec<Delta>) -> bool {
        match kind {
            "response.output_text.delta" => self.text(event.delta, out),
            "response.refusal.delta" => {
                self.refused = true;
                self.text(event.delta, out);
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.thinking(event.delta, out);
            }
            "response.function_call_arguments.delta" => {
                if let Some(index) = self.call_index(event.item_id.as_deref(), event.output_index) {
                    self.arguments_of(index, event.delta, false, out);
                }
            }
            _ => return false,
        }
        true
    }

    fn text(&mut self, delta: Str, out: &mut Vec<Delta>) {
        if !delta.is_empty() {
            self.start(None, out);
            self.after_thinking = false;
            out.push(Delta::Text(delta.into()));
        }
    }

    fn thinking(&mut self, delta: Str, out: &mut Vec<Delta>) {
        if !delta.is_empty() {
            self.start(None, out);
            self.after_thinking = true;
            out.push(Delta::Thinking(delta.into()));
        }
    }

    fn item_added(&mut self, event: &Map<String, Value>, out: &mut Vec<Delta>) {
        let Some(item) = event.get("item").and_then(Value::as_object) else {
            return;
        };
        if text_of(item, "type") == "function_call" {
            self.call(item, event.get("output_index").and_then(Value::as_u64), out);
        }
    }

    /// A new function call: its start and whatever arguments its item already holds.
    fn call(&mut self, item: &Map<String, Value>, output_index: Option<u64>, out: &mut Vec<Delta>) {
        self.start(None, out);
        self.after_thinking = false;
        let index = self.calls.len();
        self.calls.push(CallSeen {
            item_id: item.get("id").and_then(Value::as_str).map(str::to_owned),
            output_index,
            streamed: false,
        });
        out.push(Delta::ToolCall {
            index,
            id: text_of(item, "call_id").to_owned(),
            name: text_of(item, "name").to_owned(),
        });
        self.arguments_of(index, Str::from(text_of(item, "arguments")), true, out);
    }

    /// The tool index of the call `event` is about; `item_id` is the id of its item, if it has
    /// one, else the event's `item_id`.
    fn call_at(&self, event: &Map<String, Value>, item_id: Option<&str>) -> Option<usize> {
        let item_id = item_id.or_else(|| event.get("item_id").and_then(Value::as_str));
        self.call_index(item_id, event.get("output_index").and_then(Value::as_u64))
    }

    /// The tool index of the call with item `item_id`, else at `output_index`.
    fn call_index(&self, item_id: Option<&str>, output_index: Option<u64>) -> Option<usize> {
        self.calls
            .iter()
            .position(|call| item_id.is_some() && call.item_id.as_deref() == item_id)
            .or_else(|| {
                let by_index =
                    |call: &CallSeen| output_index.is_some() && call.output_index == output_index;
                self.calls.iter().position(by_index)
            })
    }

    /// Argument text of call `index`; a `whole` text (the final arguments) only when none was
    /// streamed.
    fn arguments_of(&mut self, index: usize, text: Str, whole: bool, out: &mut Vec<Delta>) {
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        if text.is_empty() || (whole && call.streamed) {
            return;
        }
        call.streamed = true;
        out.push(Delta::ToolArguments {
            index,
            fragment: text.into(),
        });
    }

    /// A finished item: a reasoning item's signature, or a call whose added event or argument
    /// deltas were left out.
    fn item_done(&mut self, event: &Map<String, Value>, out: &mut Vec<Delta>) {
        let Some(item) = event.get("item").and_then(Value::as_object) else {
            return;
        };
        match text_of(item, "type") {
            "reasoning" => {
                if let Some(signature) = get(item, "encrypted_content").and_then(Value::as_str) {
                    self.start(None, out);
                    self.after_thinking = false;
                    out.push(Delta::ThinkingSignature(signature.to_owned()));
                }
            }
            "function_call" => {
                let item_id = item.get("id").and_then(Value::as_str);
                match self.call_at(event, item_id) {
                    Some(index) => {
                        let arguments = Str::from(text_of(item, "arguments"));
                        self.arguments_of(index, arguments, true, out);
                    }
                    None => self.call(item, event.get("output_index").and_then(Value::as_u64), out),
                }
            }
            _ => {}
        }
    }

    /// The final event: usage, finish and the end of the stream.
    fn complete(
        &mut self,
        response: Option<&Map<String, Value>>,
        status: &str,
        out: &mut Vec<Delta>,
    ) {
        self.start(response, out);
        let empty = Map::new();
        let response = response.unwrap_or(&empty);
        if let Some(usage) = get(response, "usage") {
            out.push(Delta::Usage(decode_usage(usage)));
        }
        let calls = !self.calls.is_empty();
        if let Some(finish) = finish_of(response, Some(status), calls, self.refused) {
            out.push(Delta::Finish(finish));
        }
        out.push(Delta::Done);
        self.ended = true;
    }

    /// An error (from an `error` event or a failed response): the stream ends with it.
    fn error(&mut self, error: Option<&Map<String, Value>>, kind: &str, out: &mut Vec<Delta>) {
        let empty = Map::new();
        let error = error.unwrap_or(&empty);
        // The `error` event's own `type` is "error"; a nested error's `type` is its kind.
        let kind = [text_of(error, "type"), text_of(error, "code")]
            .into_iter()
            .find(|kind| !kind.is_empty() && *kind != "error")
            .unwrap_or(kind);
        let message = match text_of(error, "message") {
            "" => "the provider reported an error",
            message => message,
        };
        out.push(Delta::Error {
            kind: kind.to_owned(),
            message: message.to_owned(),
        });
        self.ended = true;
    }
}

// ---------------------------------------------------------------------------------------------
// Stream encoding

/// Writes [`Delta`]s as a Responses event stream: `response.created`, output items opened
/// and closed around their deltas, and `response.completed` (or `response.incomplete`) with
/// the whole response once the upstream stream is done.
#[derive(Debug, Default)]
pub struct ResponsesEncoder {
    /// Set by the first delta (from `Delta::Start` when it comes first).
    head: Option<Head>,
    /// The next event's `sequence_number`.
    sequence: u64,
    /// Finished output items, in order.
    output: Vec<Value>,
    /// Items being streamed: one message or reasoning item, or function calls.
    open: Vec<OpenItem>,
    usage: Option<Usage>,
    finish: Option<Finish>,
    /// The final or error event was written.
    ended: bool,
}

/// An output item still being streamed.
#[derive(Debug)]
struct OpenItem {
    id: String,
    output_index: usize,
    kind: OpenKind,
}

#[derive(Debug)]
enum OpenKind {
    Message {
        text: String,
    },
    Reasoning {
        text: String,
        signature: Option<String>,
    },
    Call {
        /// The tool index of the call.
        index: usize,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// A delta event as written, without a `Value`: fields in alphabetical order, as a `Value` writes
/// them (see `sse_write`).
#[derive(Serialize)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u64>,
    delta: &'a str,
    item_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[u8; 0]>,
    output_index: usize,
    sequence_number: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u64>,
    #[serde(rename = "type")]
    kind: &'a str,
}

impl StreamEncoder for ResponsesEncoder {
    fn delta(&mut self, delta: Delta, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match delta {
            Delta::Start { id, model, created } => self.start(Head { id, model, created }, out),
            Delta::Text(text) => self.text(&text, out),
            Delta::Thinking(text) => self.thinking(&text, out),
            Delta::ThinkingSignature(signature) => self.signature(signature, out),
            Delta::ToolCall { index, id, name } => self.call(index, id, name, out),
            Delta::ToolArguments { index, fragment } => self.arguments(index, &fragment, out),
            Delta::Usage(usage) => self.usage = Some(usage),
            Delta::Finish(finish) => self.finish = Some(finish),
            Delta::Error { kind, message } => {
                out.extend_from_slice(&error_event(Surface::Responses, &kind, &message, &kind));
                self.ended = true;
            }
            Delta::Done => self.done(out),
        }
    }
}

impl ResponsesEncoder {
    /// An encoder for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one event named `name` with `fields` (an object) and the next sequence number.
    fn event(&mut self, name: &str, fields: Value, out: &mut Vec<u8>) {
        let mut data = json!({"type": name, "sequence_number": self.next_sequence()});
        if let (Some(data), Value::Object(fields)) = (data.as_object_mut(), fields) {
            data.extend(fields);
        }
        sse_write::event(out, Some(name), &data);
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence - 1
    }

    /// Adds `delta` to the text (or arguments) of open item `open` and writes the delta event of
    /// its kind.
    fn write_delta(&mut self, open: usize, delta: &str, out: &mut Vec<u8>) {
        let sequence_number = self.next_sequence();
        let item = &mut self.open[open];
        let (kind, content_index, logprobs, summary_index) = match &mut item.kind {
            OpenKind::Message { text } => {
                text.push_str(delta);
                ("response.output_text.delta", Some(0), Some([]), None)
            }
            OpenKind::Reasoning { text, .. } => {
                text.push_str(delta);
                ("response.reasoning_summary_text.delta", None, None, Some(0))
            }
            OpenKind::Call { arguments, .. } => {
                arguments.push_str(delta);
                ("response.function_call_arguments.delta", None, None, None)
            }
        };
        let event = DeltaOut {
            content_index,
            delta,
            item_id: &item.id,
            logprobs,
            output_index: item.output_index,
            sequence_number,
            summary_index,
            kind,
        };
        sse_write::event(out, Some(kind), &event);
    }

    fn start(&mut self, head: Head, out: &mut Vec<u8>) {
        if self.head.is_some() {
            return;
        }
        let response = head.response("in_progress", None, Vec::new(), None);
        self.head = Some(head);
        self.event("response.created", json!({"response": response}), out);
        self.event("response.in_progress", json!({"response": response}), out);
    }

    /// The head, after opening the stream with an empty one if `Delta::Start` never came.
    fn head(&mut self, out: &mut Vec<u8>) -> Head {
        self.start(Head::default(), out);
        self.head.clone().unwrap_or_default()
    }

    /// Opens an item of `kind` and returns its place in [`Self::open`].
    fn open(&mut self, kind: OpenKind, out: &mut Vec<u8>) -> usize {
        let head = self.head(out);
        let output_index = self.output.len() + self.open.len();
        let (id, item) = match &kind {
            OpenKind::Message { .. } => {
                let id = head.item_id("msg", output_index);
                let item = message_item(&id, "in_progress", Vec::new());
                (id, item)
            }
            OpenKind::Reasoning { .. } => {
                let id = head.item_id("rs", output_index);
                let item = reasoning_item(&id, "", None);
                (id, item)
            }
            OpenKind::Call { call_id, name, .. } => (
                call_item_id(call_id),
                function_call_item(call_id, name, "", "in_progress"),
            ),
        };
        self.event(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
            out,
        );
        self.open.push(OpenItem {
            id,
            output_index,
            kind,
        });
        self.open.len() - 1
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let open = match self.open.last() {
            Some(OpenItem {
                kind: OpenKind::Message { .. },
                ..
            }) => self.open.len() - 1,
            _ => {
                self.close_all("completed", out);
                let kind = OpenKind::Message {
                    text: String::new(),
                };
                let open = self.open(kind, out);
                let (id, output_index) = (self.open[open].id.clone(), self.open[open].output_index);
                self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": output_index, "content_index": 0,
                        "part": output_text("")}),
                    out,
                );
                open
            }
        };
        self.write_delta(open, text, out);
    }

    /// The open reasoning item that can take more thinking (one without a signature yet),
    /// after opening one if there is none.
    fn reasoning(&mut self, out: &mut Vec<u8>) -> usize {
        if let Some(OpenItem {
            kind: OpenKind::Reasoning {
                signature: None, ..
            },
            ..
        }) = self.open.last()
        {
            return self.open.len() - 1;
        }
        self.close_all("completed", out);
        let kind = OpenKind::Reasoning {
            text: String::new(),
            signature: None,
        };
        self.open(kind, out)
    }

    fn thinking(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let open = self.reasoning(out);
        let item = &self.open[open];
        if matches!(&item.kind, OpenKind::Reasoning { text, .. } if text.is_empty()) {
            let fields = json!({"item_id": item.id, "output_index": item.output_index,
                "summary_index": 0, "part": summary_text("")});
            self.event("response.reasoning_summary_part.added", fields, out);
        }
        self.write_delta(open, text, out);
    }

    fn signature(&mut self, signature: String, out: &mut Vec<u8>) {
        let open = self.reasoning(out);
        if let OpenKind::Reasoning {
            signature: slot, ..
        } = &mut self.open[open].kind
        {
            *slot = Some(signature);
        }
    }

    fn call(&mut self, index: usize, call_id: String, name: String, out: &mut Vec<u8>) {
        // Calls stay open side by side (their arguments may interleave); text or reasoning
        // does not.
        if self
            .open
            .iter()
            .any(|item| !matches!(item.kind, OpenKind::Call { .. }))
        {
            self.close_all("completed", out);
        }
        let kind = OpenKind::Call {
            index,
            call_id,
            name,
            arguments: String::new(),
        };
        self.open(kind, out);
    }

    /// More arguments of call `index`; dropped when the call is not open (never announced, or
    /// already closed by later text).
    fn arguments(&mut self, index: usize, fragment: &str, out: &mut Vec<u8>) {
        let open = self.open.iter().position(
            |item| matches!(item.kind, OpenKind::Call { index: open, .. } if open == index),
        );
        if let Some(open) = open.filter(|_| !fragment.is_empty()) {
            self.write_delta(open, fragment, out);
        }
    }

    /// Closes the open items (in output order) with their `…done` events; `status` is the
    /// status of their items.
    fn close_all(&mut self, status: &str, out: &mut Vec<u8>) {
        for item in std::mem::take(&mut self.open) {
            let done = self.close(item, status, out);
            self.output.push(done);
        }
    }

    /// Writes the `…done` events of `item` and returns the finished item.
    fn close(&mut self, item: OpenItem, status: &str, out: &mut Vec<u8>) -> Value {
        let OpenItem {
            id,
            output_index,
            kind,
        } = item;
        let at = json!({"item_id": id, "output_index": output_index});
        let done = match kind {
            OpenKind::Message { text } => {
                let mut fields = at.clone();
                fields["content_index"] = 0.into();
                let mut text_done = fields.clone();
                text_done["text"] = text.as_str().into();
                text_done["logprobs"] = json!([]);
                self.event("response.output_text.done", text_done, out);
                fields["part"] = output_text(&text);
                self.event("response.content_part.done", fields, out);
                message_item(&id, status, vec![output_text(&text)])
            }
            OpenKind::Reasoning { text, signature } => {
                if !text.is_empty() {
                    let mut fields = at.clone();
                    fields["summary_index"] = 0.into();
                    let mut text_done = fields.clone();
                    text_done["text"] = text.as_str().into();
                    self.event("response.reasoning_summary_text.done", text_done, out);
                    fields["part"] = summary_text(&text);
                    self.event("response.reasoning_summary_part.done", fields, out);
                }
                reasoning_item(&id, &text, signature.as_deref())
            }
            OpenKind::Call {
                call_id,
                name,
                arguments,
                ..
            } => {
                let mut fields = at.clone();
                fields["arguments"] = arguments.as_str().into();
                self.event("response.function_call_arguments.done", fields, out);
                function_call_item(&call_id, &name, &arguments, status)
            }
        };
        let fields = json!({"output_index": output_index, "item": done});
        self.event("response.output_item.done", fields, out);
        done
    }

    /// The upstream stream completed: closes the open items and writes the whole response.
    fn done(&mut self, out: &mut Vec<u8>) {
        let head = self.head(out);
        let outcome = Outcome::of(self.finish.as_ref());
        self.close_all(outcome.item_status(), out);
        let output = std::mem::take(&mut self.output);
        let response = head.response(outcome.status, outcome.reason, output, self.usage.as_ref());
        let name = match outcome.status {
            "incomplete" => "response.incomplete",
            _ => "response.completed",
        };
        self.event(name, json!({"response": response}), out);
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: Value) -> (Result<Request, Invalid>, Removed) {
        let mut removed = Removed::default();
        let body = body.as_object().cloned().unwrap_or_default();
        (Responses::decode_request(&body, &mut removed), removed)
    }

    /// The names in `removed`, sorted (key order depends on serde_json's features).
    fn names(removed: &Removed) -> Vec<&str> {
        let mut names: Vec<&str> = removed.names().iter().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    fn text(text: &str) -> Part {
        text_part(text.to_owned())
    }

    fn call(id: &str, name: &str, arguments: &str) -> Part {
        Part::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn url_image(url: &str) -> Part {
        Part::Image(Image {
            source: ImageSource::Url(url.into()),
            cache: None,
        })
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

    /// A Codex-style stateless request using most of what the format has.
    fn codex_request() -> Value {
        json!({
            "model": "gpt-5-codex",
            "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "developer",
                    "content": [{"type": "input_text", "text": "<permissions>"}]},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "What is in these?"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                    {"type": "input_image", "file_id": "file-abc", "detail": "auto"},
                    {"type": "input_file", "file_id": "file-def"}]},
                {"type": "reasoning", "id": "rs_1", "content": null, "encrypted_content": "gAAAAABo",
                    "summary": [{"type": "summary_text", "text": "**Looking**"},
                        {"type": "summary_text", "text": "Then listing."}]},
                {"type": "message", "role": "assistant", "id": "msg_1",
                    "content": [{"type": "output_text", "text": "Let me look."}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "shell",
                    "arguments": "{\"command\":[\"ls\"]}"},
                {"type": "function_call", "call_id": "call_b", "name": "read", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_a", "output": "a.png\nb.png"},
                {"type": "function_call_output", "call_id": "call_b", "output": [
                    {"type": "input_text", "text": "contents"},
                    {"type": "input_image", "image_url": "https://example.com/b.png"}]},
                {"type": "custom_tool_call", "call_id": "call_c", "name": "apply_patch",
                    "input": "*** Begin Patch"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [
                {"type": "function", "name": "shell", "description": "Runs a command",
                    "strict": false, "parameters": {"type": "object",
                        "properties": {"command": {"type": "array"}}}},
                {"type": "web_search"},
                {"type": "function", "name": "read", "strict": true, "parameters": null}
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "reasoning": {"effort": "high", "summary": "auto"},
            "store": false,
            "stream": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "abc",
            "max_output_tokens": 2048,
            "temperature": 0.5,
            "top_p": 0.9,
            "safety_identifier": "user-1",
            "text": {"verbosity": "low"}
        })
    }

    fn codex_ir() -> Request {
        Request {
            model: "gpt-5-codex".into(),
            system: vec![
                TextPart {
                    text: "You are Codex.".into(),
                    cache: None,
                },
                TextPart {
                    text: "<permissions>".into(),
                    cache: None,
                },
            ],
            messages: vec![
                user(vec![
                    text("What is in these?"),
                    url_image("https://example.com/a.png"),
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
                        text: "**Looking**\n\nThen listing.".into(),
                        signature: Some("gAAAAABo".into()),
                    },
                    text("Let me look."),
                    call("call_a", "shell", "{\"command\":[\"ls\"]}"),
                    call("call_b", "read", "{}"),
                ]),
                user(vec![
                    Part::ToolResult {
                        id: "call_a".into(),
                        content: vec![text("a.png\nb.png")],
                        is_error: false,
                    },
                    Part::ToolResult {
                        id: "call_b".into(),
                        content: vec![text("contents"), url_image("https://example.com/b.png")],
                        is_error: false,
                    },
                ]),
                user(vec![text("Thanks")]),
            ],
            tools: vec![
                Tool {
                    name: "shell".into(),
                    description: Some("Runs a command".into()),
                    parameters: json!({"type": "object",
                        "properties": {"command": {"type": "array"}}}),
                    strict: Some(false),
                    cache: None,
                },
                Tool {
                    name: "read".into(),
                    description: None,
                    parameters: json!({"type": "object", "properties": {}}),
                    strict: Some(true),
                    cache: None,
                },
            ],
            tool_choice: Some(ToolChoice::Auto),
            parallel_tool_calls: Some(false),
            max_tokens: Some(2048),
            temperature: Some(0.5),
            top_p: Some(0.9),
            stop: Vec::new(),
            stream: true,
            reasoning: Some(Reasoning {
                budget_tokens: None,
                effort: Some("high".into()),
            }),
            user: Some("user-1".into()),
        }
    }

    #[test]
    fn decodes_a_codex_request() {
        let (request, removed) = decode(codex_request());
        assert_eq!(request, Ok(codex_ir()));
        assert_eq!(
            names(&removed),
            [
                "input[1].content[3].file_id",
                "input[1].content[4].type=input_file",
                "input[8].type=custom_tool_call",
                "prompt_cache_key",
                "text",
                "tools[1]",
            ]
        );
    }

    #[test]
    fn decodes_string_input_and_lenient_shapes() {
        let (request, removed) = decode(json!({
            "model": "gpt-4.1", "input": "Hi", "tools": null, "user": "u",
            "previous_response_id": "resp_1", "store": true,
            "reasoning": {"effort": "none"}, "tool_choice": {"type": "web_search_preview"}
        }));
        let request = request.unwrap();
        assert_eq!(request.messages, [user(vec![text("Hi")])]);
        assert_eq!(request.user.as_deref(), Some("u"));
        assert_eq!(request.reasoning, None, "effort none asks for no reasoning");
        assert_eq!(request.tool_choice, None);
        assert_eq!(names(&removed), ["previous_response_id", "tool_choice"]);

        let (request, removed) = decode(json!({"model": "m", "input": [
            {"type": "message", "role": "system", "content": [
                {"type": "input_text", "text": "Be brief."},
                {"type": "input_image", "image_url": "https://example.com/x.png", "detail": "high"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://e.com/y.png",
                "detail": "low"}]},
            {"role": "user", "content": []}
        ], "user": "old", "safety_identifier": "new", "tool_choice": {"type": "function", "name": "f"}}));
        let request = request.unwrap();
        assert_eq!(
            request.system,
            [TextPart {
                text: "Be brief.".into(),
                cache: None
            }]
        );
        assert_eq!(
            request.messages,
            [
                assistant(vec![text("No.")]),
                user(vec![url_image("https://e.com/y.png")])
            ]
        );
        assert_eq!(request.user.as_deref(), Some("new"));
        assert_eq!(request.tool_choice, Some(ToolChoice::Tool("f".into())));
        assert_eq!(
            names(&removed),
            [
                "input[0].content[1].type=input_image",
                "input[2].content[0].detail",
                "user"
            ]
        );
    }

    #[test]
    fn rejects_what_is_not_a_responses_request() {
        let cases = [
            (json!({"input": "x"}), "model: expected a string"),
            (
                json!({"model": "m", "input": 3}),
                "input: expected a string or an array of items",
            ),
            (
                json!({"model": "m", "input": ["x"]}),
                "input[0]: expected an object",
            ),
            (
                json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
                "input[0].role: expected user, assistant, system or developer, got \"tool\"",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
                "input[0].call_id: expected a string",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c",
                    "output": [{"type": "input_text"}]}]}),
                "input[0].output[0].text: expected a string",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image",
                    "image_url": "data:image/png,abc"}]}]}),
                "input[0].content[0].image_url: expected an http(s) or base64 data URL",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": 1}]}),
                "input[0].content: expected a string or an array of parts",
            ),
            (
                json!({"model": "m", "tools": [{"name": "f"}]}),
                "tools[0].type: expected a string",
            ),
            (
                json!({"model": "m", "tool_choice": "any"}),
                "tool_choice: expected auto, none or required, got \"any\"",
            ),
            (
                json!({"model": "m", "max_output_tokens": -1}),
                "max_output_tokens: expected a non-negative integer",
            ),
            (
                json!({"model": "m", "temperature": "hot"}),
                "temperature: expected a number",
            ),
            (
                json!({"model": "m", "reasoning": "high"}),
                "reasoning: expected an object",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(decode(body).0, Err(Invalid::new(message)));
        }
    }

    #[test]
    fn encodes_a_request_from_another_format() {
        let request = Request {
            model: "gpt-5".into(),
            system: vec![
                TextPart {
                    text: "Be kind.".into(),
                    cache: Some(json!({"type": "ephemeral"})),
                },
                TextPart {
                    text: "Be brief.".into(),
                    cache: None,
                },
            ],
            messages: vec![
                user(vec![
                    text("Weather?"),
                    Part::Image(Image {
                        source: ImageSource::Base64 {
                            media_type: "image/jpeg".into(),
                            data: "/9j/4A==".into(),
                        },
                        cache: None,
                    }),
                ]),
                assistant(vec![
                    Part::Thinking {
                        text: "Need the tool.".into(),
                        signature: Some("EqQBCkgIBxAB".into()),
                    },
                    Part::RedactedThinking {
                        data: "EmwKAhgB".into(),
                    },
                    text("Checking."),
                    call("toolu_01", "weather", "{\"city\":\"Paris\"}"),
                ]),
                user(vec![
                    Part::ToolResult {
                        id: "toolu_01".into(),
                        content: vec![text("18C"), text("sunny")],
                        is_error: true,
                    },
                    text("And tomorrow?"),
                ]),
            ],
            tools: vec![Tool {
                name: "weather".into(),
                description: Some("Gets the weather".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                strict: None,
                cache: None,
            }],
            tool_choice: Some(ToolChoice::Tool("weather".into())),
            parallel_tool_calls: None,
            max_tokens: Some(1),
            temperature: Some(1.0),
            top_p: None,
            stop: vec!["END".into()],
            stream: true,
            reasoning: Some(Reasoning {
                budget_tokens: Some(10_000),
                effort: None,
            }),
            user: Some("user-7".into()),
        };
        let mut removed = Removed::default();
        let body = Responses::encode_request(&request, &mut removed);
        assert_eq!(
            Value::Object(body),
            json!({
                "model": "gpt-5",
                "instructions": "Be kind.\n\nBe brief.",
                "input": [
                    {"type": "message", "role": "user", "content": [
                        {"type": "input_text", "text": "Weather?"},
                        {"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/4A==",
                            "detail": "auto"}]},
                    {"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Checking."}]},
                    {"type": "function_call", "call_id": "toolu_01", "name": "weather",
                        "arguments": "{\"city\":\"Paris\"}"},
                    {"type": "function_call_output", "call_id": "toolu_01", "output": "18C\nsunny"},
                    {"type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": "And tomorrow?"}]}
                ],
                "tools": [{"type": "function", "name": "weather", "description": "Gets the weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "strict": false}],
                "tool_choice": {"type": "function", "name": "weather"},
                "max_output_tokens": 16,
                "temperature": 1.0,
                "reasoning": {"effort": "medium"},
                "user": "user-7",
                "store": false,
                "stream": true
            })
        );
        assert_eq!(
            names(&removed),
            [
                "cache_control",
                "is_error",
                "redacted_thinking",
                "stop",
                "thinking"
            ]
        );
    }

    #[test]
    fn a_request_survives_decode_encode_decode() {
        let (first, _) = decode(codex_request());
        let first = first.unwrap();
        let mut removed = Removed::default();
        let encoded = Responses::encode_request(&first, &mut removed);
        assert_eq!(names(&removed), ["thinking"]);
        let mut again = Removed::default();
        let second = Responses::decode_request(&encoded, &mut again).unwrap();
        assert!(again.is_empty(), "{again:?}");
        // Reasoning is never sent to a provider, and system parts travel as one text.
        let mut expected = first;
        for message in &mut expected.messages {
            message
                .content
                .retain(|part| !matches!(part, Part::Thinking { .. }));
        }
        expected.system = vec![TextPart {
            text: "You are Codex.\n\n<permissions>".into(),
            cache: None,
        }];
        assert_eq!(second, expected);
    }

    fn openai_response() -> Value {
        json!({
            "id": "resp_68af", "object": "response", "created_at": 1756315657,
            "status": "completed", "background": false, "error": null,
            "incomplete_details": null, "model": "gpt-5-2025-08-07",
            "output": [
                {"id": "rs_68af1", "type": "reasoning", "encrypted_content": "gAAAA",
                    "summary": [{"type": "summary_text", "text": "**Checking weather**"}]},
                {"id": "msg_68af2", "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                        "text": "Checking."}]},
                {"id": "fc_68af3", "type": "function_call", "status": "completed",
                    "arguments": "{\"city\":\"Paris\"}", "call_id": "call_x", "name": "get_weather"},
                {"id": "ws_1", "type": "web_search_call", "status": "completed"}
            ],
            "usage": {"input_tokens": 320, "input_tokens_details": {"cached_tokens": 256},
                "output_tokens": 150, "output_tokens_details": {"reasoning_tokens": 128},
                "total_tokens": 470}
        })
    }

    fn answer() -> Response {
        Response {
            id: "resp_68af".into(),
            model: "gpt-5-2025-08-07".into(),
            created: 1756315657,
            content: vec![
                Part::Thinking {
                    text: "**Checking weather**".into(),
                    signature: Some("gAAAA".into()),
                },
                text("Checking."),
                call("call_x", "get_weather", "{\"city\":\"Paris\"}"),
            ],
            finish: Some(Finish::ToolUse),
            usage: Usage {
                input: 320,
                output: 150,
                cache_read: 256,
                cache_write: 0,
                reasoning: 128,
            },
        }
    }

    #[test]
    fn decodes_an_answer() {
        assert_eq!(Responses::decode_response(&openai_response()), Ok(answer()));
    }

    #[test]
    fn decodes_how_an_answer_stopped() {
        let finish = |patch: Value| {
            let mut body = json!({"status": "completed", "output": [{"type": "message",
                "content": [{"type": "output_text", "text": "Hi"}]}]});
            if let (Some(body), Value::Object(patch)) = (body.as_object_mut(), patch) {
                body.extend(patch);
            }
            Responses::decode_response(&body).unwrap().finish
        };
        assert_eq!(finish(json!({})), Some(Finish::Stop));
        let length = json!({"status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"}});
        assert_eq!(finish(length), Some(Finish::Length));
        let filtered = json!({"status": "incomplete",
            "incomplete_details": {"reason": "content_filter"}});
        assert_eq!(finish(filtered), Some(Finish::ContentFilter));
        let refusal = json!({"output": [{"type": "message",
            "content": [{"type": "refusal", "refusal": "I can't."}]}]});
        assert_eq!(finish(refusal), Some(Finish::ContentFilter));
        assert_eq!(finish(json!({"status": "failed"})), None);
        assert_eq!(
            Responses::decode_response(&json!({"output": {}})),
            Err(Invalid::new("output: expected an array"))
        );
    }

    #[test]
    fn encodes_an_answer() {
        let mut response = answer();
        response.content.insert(2, text(" More."));
        response
            .content
            .push(Part::RedactedThinking { data: "x".into() });
        let encoded = Responses::encode_response(&response);
        let expected_output = json!([
            {"type": "reasoning", "id": "rs_68af_0", "encrypted_content": "gAAAA",
                "summary": [{"type": "summary_text", "text": "**Checking weather**"}]},
            {"type": "message", "id": "msg_68af_1", "status": "completed", "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []},
                    {"type": "output_text", "text": " More.", "annotations": [], "logprobs": []}]},
            {"type": "function_call", "id": "fc_call_x", "call_id": "call_x",
                "name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"}
        ]);
        assert_eq!(encoded["output"], expected_output);
        assert_eq!(encoded["id"], "resp_68af");
        assert_eq!(encoded["object"], "response");
        assert_eq!(encoded["created_at"], 1756315657);
        assert_eq!(encoded["status"], "completed");
        assert_eq!(encoded["incomplete_details"], Value::Null);
        assert_eq!(encoded["model"], "gpt-5-2025-08-07");
        assert_eq!(encoded["tools"], json!([]));
        assert_eq!(
            encoded["usage"],
            json!({"input_tokens": 320,
                "input_tokens_details": {"cached_tokens": 256, "cache_write_tokens": 0},
                "output_tokens": 150, "output_tokens_details": {"reasoning_tokens": 128},
                "total_tokens": 470})
        );

        let truncated = Response {
            id: "msg_01".into(),
            content: vec![text("Once upon")],
            finish: Some(Finish::Length),
            ..Response::default()
        };
        let encoded = Responses::encode_response(&truncated);
        assert_eq!(encoded["status"], "incomplete");
        assert_eq!(
            encoded["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(encoded["output"][0]["id"], "msg_msg_01_0");
        assert_eq!(encoded["output"][0]["status"], "incomplete");
        let filtered = Response {
            finish: Some(Finish::ContentFilter),
            ..truncated
        };
        let encoded = Responses::encode_response(&filtered);
        assert_eq!(
            encoded["incomplete_details"],
            json!({"reason": "content_filter"})
        );
    }

    #[test]
    fn an_answer_survives_encode_decode() {
        for finish in [Finish::ToolUse, Finish::Length] {
            let response = Response {
                finish: Some(finish),
                ..answer()
            };
            let encoded = Responses::encode_response(&response);
            assert_eq!(Responses::decode_response(&encoded), Ok(response));
        }
    }

    // ------------------------------------------------------------------------------------------
    // Streams

    /// Splits SSE text into (event name, data) pairs.
    fn parse_sse(text: &str) -> Vec<(String, Value)> {
        text.split("\n\n")
            .filter(|event| !event.is_empty())
            .map(|event| {
                let mut lines = event.lines();
                let name = lines
                    .next()
                    .and_then(|l| l.strip_prefix("event: "))
                    .unwrap();
                let data = lines.next().and_then(|l| l.strip_prefix("data: ")).unwrap();
                (name.to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    fn decode_stream(text: &str) -> Vec<Delta> {
        let mut decoder = ResponsesDecoder::default();
        let mut out = Vec::new();
        for (name, data) in parse_sse(text) {
            decoder.event(Some(&name), &data.to_string(), &mut out);
        }
        out
    }

    fn encode_stream(deltas: impl IntoIterator<Item = Delta>) -> String {
        let mut encoder = ResponsesEncoder::new();
        let mut out = Vec::new();
        for delta in deltas {
            encoder.delta(delta, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    /// Events of a real text answer (gpt-4.1), abridged to the fields that matter.
    const TEXT_STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"in_progress\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"in_progress\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"id\":\"msg_67c9\",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}\n\n",
        "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":3,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\",\"logprobs\":[]}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":5,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"delta\":\" there!\",\"logprobs\":[]}\n\n",
        "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":6,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"text\":\"Hi there!\",\"logprobs\":[]}\n\n",
        "event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"sequence_number\":7,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"Hi there!\",\"annotations\":[]}}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":8,\"output_index\":0,\"item\":{\"id\":\"msg_67c9\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi there!\",\"annotations\":[]}]}}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"completed\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"id\":\"msg_67c9\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi there!\",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48}}}\n\n",
    );

    /// Events of a real reasoning answer with two summary parts and two parallel calls (gpt-5,
    /// `include: ["reasoning.encrypted_content"]`), abridged.
    const TOOL_STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_9\",\"created_at\":1756000000,\"status\":\"in_progress\",\"model\":\"gpt-5\",\"output\":[]}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,\"item\":{\"id\":\"rs_9\",\"type\":\"reasoning\",\"summary\":[]}}\n\n",
        "event: response.reasoning_summary_part.added\ndata: {\"type\":\"response.reasoning_summary_part.added\",\"sequence_number\":2,\"item_id\":\"rs_9\",\"output_index\":0,\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"\"}}\n\n",
        "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":3,\"item_id\":\"rs_9\",\"output_index\":0,\"summary_index\":0,\"delta\":\"**Plan**\"}\n\n",
        "event: response.reasoning_summary_text.done\ndata: {\"type\":\"response.reasoning_summary_text.done\",\"sequence_number\":4,\"item_id\":\"rs_9\",\"output_index\":0,\"summary_index\":0,\"text\":\"**Plan**\"}\n\n",
        "event: response.reasoning_summary_part.done\ndata: {\"type\":\"response.reasoning_summary_part.done\",\"sequence_number\":5,\"item_id\":\"rs_9\",\"output_index\":0,\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"**Plan**\"}}\n\n",
        "event: response.reasoning_summary_part.added\ndata: {\"type\":\"response.reasoning_summary_part.added\",\"sequence_number\":6,\"item_id\":\"rs_9\",\"output_index\":0,\"summary_index\":1,\"part\":{\"type\":\"summary_text\",\"text\":\"\"}}\n\n",
        "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":7,\"item_id\":\"rs_9\",\"output_index\":0,\"summary_index\":1,\"delta\":\"Call both.\"}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":8,\"output_index\":0,\"item\":{\"id\":\"rs_9\",\"type\":\"reasoning\",\"encrypted_content\":\"gAAAAB\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"**Plan**\"},{\"type\":\"summary_text\",\"text\":\"Call both.\"}]}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":9,\"output_index\":1,\"item\":{\"id\":\"fc_1\",\"type\":\"function_call\",\"status\":\"in_progress\",\"arguments\":\"\",\"call_id\":\"call_A\",\"name\":\"get_weather\"}}\n\n",
        "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":10,\"item_id\":\"fc_1\",\"output_index\":1,\"delta\":\"{\\\"city\\\":\"}\n\n",
        "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":11,\"item_id\":\"fc_1\",\"output_index\":1,\"delta\":\"\\\"Paris\\\"}\"}\n\n",
        "event: response.function_call_arguments.done\ndata: {\"type\":\"response.function_call_arguments.done\",\"sequence_number\":12,\"item_id\":\"fc_1\",\"output_index\":1,\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":13,\"output_index\":1,\"item\":{\"id\":\"fc_1\",\"type\":\"function_call\",\"status\":\"completed\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\",\"call_id\":\"call_A\",\"name\":\"get_weather\"}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":14,\"output_index\":2,\"item\":{\"id\":\"fc_2\",\"type\":\"function_call\",\"status\":\"in_progress\",\"arguments\":\"\",\"call_id\":\"call_B\",\"name\":\"get_time\"}}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":15,\"output_index\":2,\"item\":{\"id\":\"fc_2\",\"type\":\"function_call\",\"status\":\"completed\",\"arguments\":\"{}\",\"call_id\":\"call_B\",\"name\":\"get_time\"}}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":16,\"response\":{\"id\":\"resp_9\",\"created_at\":1756000000,\"status\":\"completed\",\"model\":\"gpt-5\",\"output\":[],\"usage\":{\"input_tokens\":90,\"input_tokens_details\":{\"cached_tokens\":64,\"cache_write_tokens\":16},\"output_tokens\":200,\"output_tokens_details\":{\"reasoning_tokens\":150},\"total_tokens\":290}}}\n\n",
    );

    #[test]
    fn decodes_a_text_stream() {
        assert_eq!(
            decode_stream(TEXT_STREAM),
            [
                Delta::Start {
                    id: "resp_67c9".into(),
                    model: "gpt-4.1-2025-04-14".into(),
                    created: 1741290958,
                },
                Delta::Text("Hi".into()),
                Delta::Text(" there!".into()),
                Delta::Usage(Usage {
                    input: 37,
                    output: 11,
                    ..Usage::default()
                }),
                Delta::Finish(Finish::Stop),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn decodes_reasoning_and_parallel_calls() {
        assert_eq!(
            decode_stream(TOOL_STREAM),
            [
                Delta::Start {
                    id: "resp_9".into(),
                    model: "gpt-5".into(),
                    created: 1756000000,
                },
                Delta::Thinking("**Plan**".into()),
                Delta::Thinking("\n\n".into()),
                Delta::Thinking("Call both.".into()),
                Delta::ThinkingSignature("gAAAAB".into()),
                Delta::ToolCall {
                    index: 0,
                    id: "call_A".into(),
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
                    id: "call_B".into(),
                    name: "get_time".into(),
                },
                // No argument deltas came for this call: its final arguments stand in.
                Delta::ToolArguments {
                    index: 1,
                    fragment: "{}".into(),
                },
                Delta::Usage(Usage {
                    input: 90,
                    output: 200,
                    cache_read: 64,
                    cache_write: 16,
                    reasoning: 150,
                }),
                Delta::Finish(Finish::ToolUse),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn decodes_incomplete_failed_and_error_streams() {
        let created = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"m\",\"created_at\":1}}\n\n";
        let start = Delta::Start {
            id: "resp_1".into(),
            model: "m".into(),
            created: 1,
        };
        let incomplete = format!("{created}event: response.incomplete\ndata: {{\"type\":\"response.incomplete\",\"response\":{{\"id\":\"resp_1\",\"status\":\"incomplete\",\"incomplete_details\":{{\"reason\":\"max_output_tokens\"}},\"usage\":{{\"input_tokens\":5,\"output_tokens\":16}}}}}}\n\n");
        assert_eq!(
            decode_stream(&incomplete),
            [
                start.clone(),
                Delta::Usage(Usage {
                    input: 5,
                    output: 16,
                    ..Usage::default()
                }),
                Delta::Finish(Finish::Length),
                Delta::Done,
            ]
        );
        let failed = format!("{created}event: response.failed\ndata: {{\"type\":\"response.failed\",\"response\":{{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{{\"code\":\"server_error\",\"message\":\"The model failed.\"}}}}}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{}}}}\n\n");
        let error = Delta::Error {
            kind: "server_error".into(),
            message: "The model failed.".into(),
        };
        assert_eq!(decode_stream(&failed), [start.clone(), error]);
        let errored = format!("{created}event: error\ndata: {{\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"Slow down.\",\"param\":null,\"sequence_number\":1}}\n\n");
        let error = Delta::Error {
            kind: "rate_limit_exceeded".into(),
            message: "Slow down.".into(),
        };
        assert_eq!(decode_stream(&errored), [start, error]);
    }

    #[test]
    fn the_decoder_skips_malformed_and_unknown_events() {
        let mut decoder = ResponsesDecoder::default();
        let mut out = Vec::new();
        decoder.event(Some("response.output_text.delta"), "{not json", &mut out);
        decoder.event(Some("keepalive"), "{\"type\":\"keepalive\"}", &mut out);
        decoder.event(
            None,
            "{\"type\":\"response.web_search_call.searching\"}",
            &mut out,
        );
        assert!(out.is_empty());
        // Named only by the `event:` field.
        decoder.event(
            Some("response.output_text.delta"),
            "{\"delta\":\"x\"}",
            &mut out,
        );
        assert_eq!(
            out,
            [
                Delta::Start {
                    id: String::new(),
                    model: String::new(),
                    created: 0
                },
                Delta::Text("x".into())
            ]
        );
    }

    fn rich_deltas() -> Vec<Delta> {
        vec![
            Delta::Start {
                id: "msg_01A".into(),
                model: "claude-sonnet-4-5".into(),
                created: 0,
            },
            Delta::Thinking("Let me".into()),
            Delta::Thinking(" think.".into()),
            Delta::ThinkingSignature("EqQBCkgI".into()),
            Delta::Text("Sure".into()),
            Delta::Text(", calling.".into()),
            Delta::ToolCall {
                index: 0,
                id: "toolu_1".into(),
                name: "weather".into(),
            },
            Delta::ToolArguments {
                index: 0,
                fragment: "{\"city\":".into(),
            },
            Delta::ToolArguments {
                index: 0,
                fragment: "\"Oslo\"}".into(),
            },
            Delta::ToolCall {
                index: 1,
                id: "toolu_2".into(),
                name: "time".into(),
            },
            Delta::ToolArguments {
                index: 1,
                fragment: "{}".into(),
            },
            Delta::Usage(Usage {
                input: 40,
                output: 30,
                cache_read: 10,
                cache_write: 5,
                reasoning: 0,
            }),
            Delta::Finish(Finish::ToolUse),
            Delta::Done,
        ]
    }

    #[test]
    fn encodes_a_stream_the_sdks_accumulate() {
        let events = parse_sse(&encode_stream(rich_deltas()));
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], n);
        }
        assert_eq!(events[0].1["response"]["status"], "in_progress");
        assert_eq!(events[0].1["response"]["output"], json!([]));
        assert_eq!(events[5].1["item_id"], "rs_msg_01A_0");
        assert_eq!(events[5].1["delta"], " think.");
        assert_eq!(events[8].1["item"]["encrypted_content"], "EqQBCkgI");
        assert_eq!(events[9].1["item"]["status"], "in_progress");
        assert_eq!(events[12].1["item_id"], "msg_msg_01A_1");
        assert_eq!(events[12].1["output_index"], 1);
        assert_eq!(events[13].1["text"], "Sure, calling.");
        assert_eq!(events[16].1["item"]["arguments"], "");
        assert_eq!(events[20].1["item_id"], "fc_toolu_2");
        assert_eq!(events[20].1["output_index"], 3);
        assert_eq!(events[21].1["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(events[22].1["item"]["arguments"], "{\"city\":\"Oslo\"}");
        // The final response is the one a whole answer with this content encodes to.
        let answer = Response {
            id: "msg_01A".into(),
            model: "claude-sonnet-4-5".into(),
            created: 0,
            content: vec![
                Part::Thinking {
                    text: "Let me think.".into(),
                    signature: Some("EqQBCkgI".into()),
                },
                text("Sure, calling."),
                call("toolu_1", "weather", "{\"city\":\"Oslo\"}"),
                call("toolu_2", "time", "{}"),
            ],
            finish: Some(Finish::ToolUse),
            usage: Usage {
                input: 40,
                output: 30,
                cache_read: 10,
                cache_write: 5,
                reasoning: 0,
            },
        };
        assert_eq!(
            events[25].1["response"],
            Responses::encode_response(&answer)
        );
    }

    #[test]
    fn a_stream_survives_encode_decode() {
        assert_eq!(decode_stream(&encode_stream(rich_deltas())), rich_deltas());
    }

    #[test]
    fn a_truncated_answer_ends_incomplete_whatever_the_order_of_usage_and_finish() {
        let deltas = vec![
            Delta::Start {
                id: "chatcmpl-1".into(),
                model: "gpt-4o".into(),
                created: 7,
            },
            Delta::Text("Once".into()),
            Delta::Finish(Finish::Length),
            Delta::Usage(Usage {
                input: 3,
                output: 1,
                ..Usage::default()
            }),
            Delta::Done,
            Delta::Text("ignored".into()),
        ];
        let events = parse_sse(&encode_stream(deltas));
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(last["response"]["usage"]["output_tokens"], 1);
        assert_eq!(events[events.len() - 2].1["item"]["status"], "incomplete");
    }

    #[test]
    fn an_error_ends_the_stream_and_a_broken_stream_stays_broken() {
        let deltas = vec![
            Delta::Start {
                id: "resp_1".into(),
                model: "m".into(),
                created: 1,
            },
            Delta::Text("Hel".into()),
            Delta::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into(),
            },
            Delta::Done,
        ];
        let stream = encode_stream(deltas);
        let events = parse_sse(&stream);
        let (name, error) = events.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(error["error"]["message"], "Overloaded");
        assert!(!stream.contains("response.completed"));
        assert_eq!(
            decode_stream(&stream)[2..],
            [Delta::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into(),
            }]
        );

        let broken = encode_stream(rich_deltas().into_iter().take(8));
        let names: Vec<String> = parse_sse(&broken)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names.last().map(String::as_str),
            Some("response.function_call_arguments.delta")
        );
        assert!(!broken.contains("response.completed"));
    }

    #[test]
    fn a_signature_alone_is_a_reasoning_item_and_each_signature_its_own() {
        let deltas = vec![
            Delta::Start {
                id: "resp_2".into(),
                model: "m".into(),
                created: 1,
            },
            Delta::ThinkingSignature("sig-only".into()),
            Delta::Thinking("second".into()),
            Delta::ThinkingSignature("sig-2".into()),
            Delta::Thinking("third".into()),
            Delta::Finish(Finish::Stop),
            Delta::Done,
        ];
        let events = parse_sse(&encode_stream(deltas));
        let (name, completed) = events.last().unwrap();
        assert_eq!(name, "response.completed");
        assert_eq!(
            completed["response"]["output"],
            json!([
                {"type": "reasoning", "id": "rs_2_0", "summary": [], "encrypted_content": "sig-only"},
                {"type": "reasoning", "id": "rs_2_1", "encrypted_content": "sig-2",
                    "summary": [{"type": "summary_text", "text": "second"}]},
                {"type": "reasoning", "id": "rs_2_2",
                    "summary": [{"type": "summary_text", "text": "third"}]}
            ])
        );
        assert_eq!(completed["response"]["usage"], Value::Null);
    }

    #[test]
    fn content_before_start_still_opens_the_stream_first() {
        let deltas = vec![
            Delta::ToolCall {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            },
            Delta::ToolArguments {
                index: 3,
                fragment: "lost".into(),
            },
            Delta::Done,
        ];
        let events = parse_sse(&encode_stream(deltas));
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(events[5].1["response"]["output"][0]["arguments"], "");
    }

    #[test]
    fn the_decoder_reads_a_call_announced_only_when_done() {
        let stream = concat!(
            "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"id\":\"fc_7\",\"call_id\":\"call_7\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"late\"}\n\n",
        );
        assert_eq!(
            decode_stream(stream)[1..],
            [
                Delta::ToolCall {
                    index: 0,
                    id: "call_7".into(),
                    name: "f".into(),
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: "{\"a\":1}".into(),
                },
                Delta::Finish(Finish::ToolUse),
                Delta::Done,
            ]
        );
    }
}
