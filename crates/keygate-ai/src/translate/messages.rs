//! Anthropic Messages (`POST /v1/messages`): requests, whole answers and SSE streams, to and from
//! the neutral types of [`super::ir`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::ir::{
    Codec, Delta, Finish, Image, ImageSource, Invalid, Message, Part, Reasoning, Removed, Request,
    Response, Role, StreamDecoder, StreamEncoder, TextPart, Tool, ToolChoice, Usage,
};
use super::{parse_object, sse_write, Str};

/// The Anthropic Messages wire format.
pub struct Messages;

/// Top-level request keys [`Messages::decode_request`] maps; every other key is noted removed
/// (`top_k`, `service_tier`, `container`, `mcp_servers`, ...).
const KNOWN: &[&str] = &[
    "model",
    "system",
    "messages",
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "thinking",
    "metadata",
];

/// `max_tokens` is required by Anthropic: the limit asked for when the request names none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The smallest `thinking.budget_tokens` Anthropic accepts.
const MIN_THINKING_BUDGET: u64 = 1024;

impl Codec for Messages {
    fn decode_request(
        body: &Map<String, Value>,
        removed: &mut Removed,
    ) -> Result<Request, Invalid> {
        removed.note_unknown(body, KNOWN);
        let (tool_choice, parallel_tool_calls) = match get(body, "tool_choice") {
            Some(choice) => decode_tool_choice(choice)?,
            None => (None, None),
        };
        let mut system = decode_system(get(body, "system"), removed)?;
        let messages = decode_messages(get(body, "messages"), &mut system, removed)?;
        Ok(Request {
            model: string(body, "", "model")?.unwrap_or_default(),
            system,
            messages,
            tools: decode_tools(get(body, "tools"), removed)?,
            tool_choice,
            parallel_tool_calls,
            max_tokens: count(body, "", "max_tokens")?,
            temperature: number(body, "", "temperature")?,
            top_p: number(body, "", "top_p")?,
            stop: decode_stop_sequences(get(body, "stop_sequences"))?,
            stream: boolean(body, "", "stream")?.unwrap_or(false),
            reasoning: decode_thinking(get(body, "thinking"))?,
            user: decode_metadata(get(body, "metadata"), removed)?,
        })
    }

    fn encode_request(request: &Request, removed: &mut Removed) -> Map<String, Value> {
        let mut body = Map::new();
        let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        body.insert("model".into(), request.model.clone().into());
        body.insert("max_tokens".into(), max_tokens.into());
        if let Some(system) = encode_system(&request.system) {
            body.insert("system".into(), system);
        }
        let messages = encode_messages(&request.messages, removed);
        let thinking = encode_thinking(request, max_tokens, &messages, removed);
        body.insert("messages".into(), messages.into());
        if !request.tools.is_empty() {
            body.insert("tools".into(), encode_tools(&request.tools, removed).into());
        }
        if let Some(choice) = encode_tool_choice(request, removed) {
            body.insert("tool_choice".into(), choice);
        }
        // OpenAI's temperatures go up to 2, Anthropic's to 1: higher ones are sent as 1, the
        // most random Anthropic allows, instead of a certain 400.
        let sampling = [
            ("temperature", request.temperature.map(|t| t.min(1.0))),
            ("top_p", request.top_p),
        ];
        for (key, value) in sampling {
            match value {
                // Anthropic rejects custom sampling while thinking.
                Some(_) if thinking.is_some() => removed.note(key),
                Some(value) => {
                    body.insert(key.into(), value.into());
                }
                None => {}
            }
        }
        if let Some(thinking) = thinking {
            body.insert("thinking".into(), thinking);
        }
        if !request.stop.is_empty() {
            body.insert("stop_sequences".into(), request.stop.clone().into());
        }
        if request.stream {
            body.insert("stream".into(), true.into());
        }
        if let Some(user) = &request.user {
            body.insert("metadata".into(), json!({ "user_id": user }));
        }
        body
    }

    fn decode_response(body: &Value) -> Result<Response, Invalid> {
        let message = body
            .as_object()
            .ok_or_else(|| Invalid::new("expected a message object"))?;
        let blocks = get(message, "content")
            .and_then(Value::as_array)
            .ok_or_else(|| Invalid::new("content: expected an array"))?;
        // Server-tool blocks (web search calls and results, ...) have no neutral form.
        let mut ignored = Removed::default();
        let mut content = Vec::with_capacity(blocks.len());
        for (i, block) in blocks.iter().enumerate() {
            content.extend(decode_block(block, &format!("content[{i}]"), &mut ignored)?);
        }
        let mut counters = Counters::default();
        if let Some(usage) = get(message, "usage") {
            counters.update(usage);
        }
        Ok(Response {
            id: string(message, "", "id")?.unwrap_or_default(),
            model: string(message, "", "model")?.unwrap_or_default(),
            created: 0,
            content,
            finish: decode_finish(
                get(message, "stop_reason").and_then(Value::as_str),
                get(message, "stop_sequence").and_then(Value::as_str),
            ),
            usage: counters.usage(),
        })
    }

    fn encode_response(response: &Response) -> Value {
        let (stop_reason, stop_sequence) = encode_finish(response.finish.as_ref());
        let content: Vec<Value> = response.content.iter().filter_map(answer_block).collect();
        json!({
            "id": response.id,
            "type": "message",
            "role": "assistant",
            "model": response.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage_json(&response.usage),
        })
    }
}

// ---- Reading requests -------------------------------------------------------------------------

/// `object[key]`, with `null` read as absent.
fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// `key` under `path` (`messages[2]` + `role` = `messages[2].role`).
fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `object[key]` read by `read`, absent when missing or `null`; `what` names the expected type
/// in the error.
fn typed<'a, T>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &str,
    what: &str,
    read: impl Fn(&'a Value) -> Option<T>,
) -> Result<Option<T>, Invalid> {
    get(object, key)
        .map(|value| read(value).ok_or_else(|| expected(&at(path, key), what)))
        .transpose()
}

fn string(object: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>, Invalid> {
    Ok(typed(object, path, key, "a string", Value::as_str)?.map(str::to_owned))
}

fn boolean(object: &Map<String, Value>, path: &str, key: &str) -> Result<Option<bool>, Invalid> {
    typed(object, path, key, "a boolean", Value::as_bool)
}

fn count(object: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u64>, Invalid> {
    typed(object, path, key, "a non-negative integer", Value::as_u64)
}

fn number(object: &Map<String, Value>, path: &str, key: &str) -> Result<Option<f64>, Invalid> {
    typed(object, path, key, "a number", Value::as_f64)
}

/// `object[key]` as a string that must be there.
fn required_str<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a str, Invalid> {
    typed(object, path, key, "a string", Value::as_str)?
        .ok_or_else(|| expected(&at(path, key), "a string"))
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Invalid> {
    value.as_object().ok_or_else(|| expected(path, "an object"))
}

fn expected(path: &str, what: &str) -> Invalid {
    Invalid::new(format!("{path}: expected {what}"))
}

/// Notes the keys of `object` (at `path`) that are not in `known` and not `null` (answers sent
/// back as they came carry `"citations": null`).
fn note_extra(object: &Map<String, Value>, path: &str, known: &[&str], removed: &mut Removed) {
    for (key, value) in object {
        if !value.is_null() && !known.contains(&key.as_str()) {
            removed.note(at(path, key));
        }
    }
}

fn decode_system(value: Option<&Value>, removed: &mut Removed) -> Result<Vec<TextPart>, Invalid> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![TextPart {
            text: text.clone(),
            cache: None,
        }]),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .map(|(i, block)| {
                let path = format!("system[{i}]");
                let block = as_object(block, &path)?;
                match required_str(block, &path, "type")? {
                    "text" => decode_text(block, &path, removed),
                    _ => Err(expected(&at(&path, "type"), "\"text\"")),
                }
            })
            .collect(),
        Some(_) => Err(expected("system", "a string or an array of text blocks")),
    }
}

/// The conversation. A `system` message inside it (Claude Code sends one to models it does not
/// know as Claude) is system text, appended to `system`.
fn decode_messages(
    value: Option<&Value>,
    system: &mut Vec<TextPart>,
    removed: &mut Removed,
) -> Result<Vec<Message>, Invalid> {
    let list = value
        .and_then(Value::as_array)
        .ok_or_else(|| expected("messages", "an array"))?;
    let mut messages = Vec::with_capacity(list.len());
    for (i, message) in list.iter().enumerate() {
        if message.get("role").and_then(Value::as_str) == Some("system") {
            system.extend(decode_system(message.get("content"), removed)?);
            continue;
        }
        messages.extend(decode_message(message, &format!("messages[{i}]"), removed)?);
    }
    Ok(messages)
}

/// One message; `None` when every block of it was dropped.
fn decode_message(
    value: &Value,
    path: &str,
    removed: &mut Removed,
) -> Result<Option<Message>, Invalid> {
    let message = as_object(value, path)?;
    note_extra(message, path, &["role", "content"], removed);
    let role = match required_str(message, path, "role")? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(Invalid::new(format!(
                "{}: unknown role {other:?}",
                at(path, "role")
            )))
        }
    };
    let content_path = at(path, "content");
    let content = match get(message, "content") {
        Some(Value::String(text)) => vec![Part::Text(TextPart {
            text: text.clone(),
            cache: None,
        })],
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                parts.extend(decode_block(
                    block,
                    &format!("{content_path}[{i}]"),
                    removed,
                )?);
            }
            parts
        }
        _ => {
            return Err(expected(
                &content_path,
                "a string or an array of content blocks",
            ))
        }
    };
    Ok((!content.is_empty()).then_some(Message { role, content }))
}

/// One content block; `None` (noted) for the kinds the neutral types cannot hold.
fn decode_block(value: &Value, path: &str, removed: &mut Removed) -> Result<Option<Part>, Invalid> {
    let block = as_object(value, path)?;
    let part = match required_str(block, path, "type")? {
        "text" => Part::Text(decode_text(block, path, removed)?),
        "image" => match decode_image(block, path, removed)? {
            Some(image) => Part::Image(image),
            None => return Ok(None),
        },
        "tool_use" => {
            note_extra(block, path, &["type", "id", "name", "input"], removed);
            Part::ToolCall {
                id: required_str(block, path, "id")?.to_owned(),
                name: required_str(block, path, "name")?.to_owned(),
                arguments: get(block, "input").map_or_else(|| "{}".to_owned(), Value::to_string),
            }
        }
        "tool_result" => decode_tool_result(block, path, removed)?,
        "thinking" => {
            note_extra(block, path, &["type", "thinking", "signature"], removed);
            Part::Thinking {
                text: required_str(block, path, "thinking")?.to_owned(),
                signature: string(block, path, "signature")?,
            }
        }
        "redacted_thinking" => {
            note_extra(block, path, &["type", "data"], removed);
            Part::RedactedThinking {
                data: required_str(block, path, "data")?.to_owned(),
            }
        }
        other => {
            removed.note(format!("{path}.type={other}"));
            return Ok(None);
        }
    };
    Ok(Some(part))
}

fn decode_text(
    block: &Map<String, Value>,
    path: &str,
    removed: &mut Removed,
) -> Result<TextPart, Invalid> {
    note_extra(block, path, &["type", "text", "cache_control"], removed);
    Ok(TextPart {
        text: required_str(block, path, "text")?.to_owned(),
        cache: get(block, "cache_control").cloned(),
    })
}

/// An image block; `None` (noted) for sources other than inline data and URLs (Files API ids).
fn decode_image(
    block: &Map<String, Value>,
    path: &str,
    removed: &mut Removed,
) -> Result<Option<Image>, Invalid> {
    note_extra(block, path, &["type", "source", "cache_control"], removed);
    let source_path = at(path, "source");
    let source = as_object(
        get(block, "source").ok_or_else(|| expected(&source_path, "an object"))?,
        &source_path,
    )?;
    let source = match required_str(source, &source_path, "type")? {
        "base64" => ImageSource::Base64 {
            media_type: required_str(source, &source_path, "media_type")?.to_owned(),
            data: required_str(source, &source_path, "data")?.to_owned(),
        },
        "url" => ImageSource::Url(required_str(source, &source_path, "url")?.to_owned()),
        other => {
            removed.note(format!("{source_path}.type={other}"));
            return Ok(None);
        }
    };
    Ok(Some(Image {
        source,
        cache: get(block, "cache_control").cloned(),
    }))
}

fn decode_tool_result(
    block: &Map<String, Value>,
    path: &str,
    removed: &mut Removed,
) -> Result<Part, Invalid> {
    note_extra(
        block,
        path,
        &["type", "tool_use_id", "content", "is_error"],
        removed,
    );
    let content_path = at(path, "content");
    let content = match get(block, "content") {
        None => Vec::new(),
        Some(Value::String(text)) => vec![Part::Text(TextPart {
            text: text.clone(),
            cache: None,
        })],
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, inner) in blocks.iter().enumerate() {
                let inner_path = format!("{content_path}[{i}]");
                let inner = as_object(inner, &inner_path)?;
                match required_str(inner, &inner_path, "type")? {
                    "text" => parts.push(Part::Text(decode_text(inner, &inner_path, removed)?)),
                    "image" => {
                        parts.extend(decode_image(inner, &inner_path, removed)?.map(Part::Image))
                    }
                    other => removed.note(format!("{inner_path}.type={other}")),
                }
            }
            parts
        }
        Some(_) => {
            return Err(expected(
                &content_path,
                "a string or an array of content blocks",
            ))
        }
    };
    Ok(Part::ToolResult {
        id: required_str(block, path, "tool_use_id")?.to_owned(),
        content,
        is_error: boolean(block, path, "is_error")?.unwrap_or(false),
    })
}

/// Custom tools; typed server tools (`web_search_20250305`, `bash_20250124`, ...) are noted by
/// index and dropped.
fn decode_tools(value: Option<&Value>, removed: &mut Removed) -> Result<Vec<Tool>, Invalid> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .ok_or_else(|| expected("tools", "an array"))?;
    let mut tools = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = as_object(tool, &path)?;
        match typed(tool, &path, "type", "a string", Value::as_str)? {
            None | Some("custom") => tools.push(decode_tool(tool, &path, removed)?),
            Some(_) => removed.note(path),
        }
    }
    Ok(tools)
}

fn decode_tool(
    tool: &Map<String, Value>,
    path: &str,
    removed: &mut Removed,
) -> Result<Tool, Invalid> {
    const KNOWN_TOOL: &[&str] = &[
        "type",
        "name",
        "description",
        "input_schema",
        "cache_control",
        "strict",
    ];
    note_extra(tool, path, KNOWN_TOOL, removed);
    Ok(Tool {
        name: required_str(tool, path, "name")?.to_owned(),
        description: string(tool, path, "description")?,
        parameters: get(tool, "input_schema").cloned().unwrap_or(Value::Null),
        strict: boolean(tool, path, "strict")?,
        cache: get(tool, "cache_control").cloned(),
    })
}

/// `tool_choice` and what its `disable_parallel_tool_use` says about parallel calls.
fn decode_tool_choice(value: &Value) -> Result<(Option<ToolChoice>, Option<bool>), Invalid> {
    let path = "tool_choice";
    let choice = as_object(value, path)?;
    let kind = match required_str(choice, path, "type")? {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Tool(required_str(choice, path, "name")?.to_owned()),
        other => {
            return Err(Invalid::new(format!(
                "tool_choice.type: unknown type {other:?}"
            )))
        }
    };
    let disable = boolean(choice, path, "disable_parallel_tool_use")?;
    Ok((Some(kind), disable.map(|disable| !disable)))
}

fn decode_stop_sequences(value: Option<&Value>) -> Result<Vec<String>, Invalid> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let what = "an array of strings";
    value
        .as_array()
        .ok_or_else(|| expected("stop_sequences", what))?
        .iter()
        .map(|stop| {
            stop.as_str()
                .map(str::to_owned)
                .ok_or_else(|| expected("stop_sequences", what))
        })
        .collect()
}

/// `thinking`: `enabled` with its budget, `adaptive` as reasoning at the default effort,
/// `disabled` as none.
fn decode_thinking(value: Option<&Value>) -> Result<Option<Reasoning>, Invalid> {
    let Some(value) = value else {
        return Ok(None);
    };
    let path = "thinking";
    let thinking = as_object(value, path)?;
    match required_str(thinking, path, "type")? {
        "enabled" => Ok(Some(Reasoning {
            budget_tokens: count(thinking, path, "budget_tokens")?,
            effort: None,
        })),
        "adaptive" => Ok(Some(Reasoning {
            budget_tokens: None,
            effort: None,
        })),
        "disabled" => Ok(None),
        other => Err(Invalid::new(format!(
            "thinking.type: unknown type {other:?}"
        ))),
    }
}

/// `metadata.user_id`; the other metadata keys are noted.
fn decode_metadata(
    value: Option<&Value>,
    removed: &mut Removed,
) -> Result<Option<String>, Invalid> {
    let Some(value) = value else {
        return Ok(None);
    };
    let metadata = as_object(value, "metadata")?;
    note_extra(metadata, "metadata", &["user_id"], removed);
    string(metadata, "metadata", "user_id")
}

// ---- Writing requests -------------------------------------------------------------------------

/// `system` as a plain string when it is one uncached text, blocks otherwise (the string form is
/// what every Messages-compatible provider accepts). Empty texts are left out: Anthropic rejects
/// empty text blocks.
fn encode_system(system: &[TextPart]) -> Option<Value> {
    let parts: Vec<&TextPart> = system.iter().filter(|part| !part.text.is_empty()).collect();
    match parts.as_slice() {
        [] => None,
        [TextPart { text, cache: None }] => Some(text.clone().into()),
        parts => Some(parts.iter().map(|part| text_block(part)).collect()),
    }
}

/// The messages, with consecutive messages of one role merged (Anthropic requires user and
/// assistant turns to alternate; several tool results become one user turn).
fn encode_messages(messages: &[Message], removed: &mut Removed) -> Vec<Value> {
    let mut turns: Vec<(Role, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let blocks = encode_parts(&message.content, &format!("messages[{i}]"), removed);
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((role, merged)) if *role == message.role => merged.extend(blocks),
            _ => turns.push((message.role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, blocks)| {
            let role = match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({ "role": role, "content": message_content(blocks) })
        })
        .collect()
}

/// A turn's content: tool results first (Anthropic requires them to open the user turn), and a
/// lone uncached text as a plain string.
fn message_content(mut blocks: Vec<Value>) -> Value {
    blocks.sort_by_key(|block| block["type"] != "tool_result");
    if let [block] = blocks.as_slice() {
        if block["type"] == "text" && block.get("cache_control").is_none() {
            return block["text"].clone();
        }
    }
    blocks.into()
}

fn encode_parts(parts: &[Part], path: &str, removed: &mut Removed) -> Vec<Value> {
    parts
        .iter()
        .enumerate()
        .filter_map(|(j, part)| encode_part(part, &format!("{path}.content[{j}]"), removed))
        .collect()
}

/// One content block; `None` for empty texts and for thinking without a signature (noted:
/// Anthropic rejects unsigned thinking).
fn encode_part(part: &Part, path: &str, removed: &mut Removed) -> Option<Value> {
    match part {
        Part::Text(text) if text.text.is_empty() => None,
        Part::Text(text) => Some(text_block(text)),
        Part::Image(image) => Some(image_block(image)),
        Part::Thinking {
            text,
            signature: Some(signature),
        } if !signature.is_empty() => Some(json!({
            "type": "thinking",
            "thinking": text,
            "signature": signature,
        })),
        Part::Thinking { .. } => {
            removed.note(format!("{path}.type=thinking"));
            None
        }
        Part::RedactedThinking { data } => {
            Some(json!({ "type": "redacted_thinking", "data": data }))
        }
        Part::ToolCall {
            id,
            name,
            arguments,
        } => {
            let input = parse_input(arguments).unwrap_or_else(|| {
                if !arguments.trim().is_empty() {
                    removed.note(format!("{path}.arguments"));
                }
                json!({})
            });
            Some(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
        }
        Part::ToolResult {
            id,
            content,
            is_error,
        } => Some(tool_result_block(id, content, *is_error, path, removed)),
    }
}

fn text_block(text: &TextPart) -> Value {
    let mut block = json!({ "type": "text", "text": text.text });
    if let Some(cache) = &text.cache {
        block["cache_control"] = cache.clone();
    }
    block
}

fn image_block(image: &Image) -> Value {
    let source = match &image.source {
        ImageSource::Base64 { media_type, data } => {
            json!({ "type": "base64", "media_type": media_type, "data": data })
        }
        ImageSource::Url(url) => json!({ "type": "url", "url": url }),
    };
    let mut block = json!({ "type": "image", "source": source });
    if let Some(cache) = &image.cache {
        block["cache_control"] = cache.clone();
    }
    block
}

/// Tool-call arguments as the `input` object Anthropic requires; `None` when they are not one.
fn parse_input(arguments: &str) -> Option<Value> {
    serde_json::from_str(arguments)
        .ok()
        .filter(Value::is_object)
}

/// A `tool_result` block: a lone uncached text as a string, else text and image blocks.
fn tool_result_block(
    id: &str,
    content: &[Part],
    is_error: bool,
    path: &str,
    removed: &mut Removed,
) -> Value {
    let mut block = json!({ "type": "tool_result", "tool_use_id": id });
    if let [Part::Text(TextPart { text, cache: None })] = content {
        block["content"] = text.clone().into();
    } else {
        let mut blocks = Vec::with_capacity(content.len());
        for (k, part) in content.iter().enumerate() {
            match part {
                Part::Text(text) if text.text.is_empty() => {}
                Part::Text(text) => blocks.push(text_block(text)),
                Part::Image(image) => blocks.push(image_block(image)),
                _ => removed.note(format!("{path}.content[{k}]")),
            }
        }
        if !blocks.is_empty() {
            block["content"] = blocks.into();
        }
    }
    if is_error {
        block["is_error"] = true.into();
    }
    block
}

fn encode_tools(tools: &[Tool], removed: &mut Removed) -> Vec<Value> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            // `strict` needs a beta header and a recent model on Anthropic: not sent.
            if tool.strict == Some(true) {
                removed.note(format!("tools[{i}].strict"));
            }
            let mut block =
                json!({ "name": tool.name, "input_schema": input_schema(&tool.parameters) });
            if let Some(description) = &tool.description {
                block["description"] = description.clone().into();
            }
            if let Some(cache) = &tool.cache {
                block["cache_control"] = cache.clone();
            }
            block
        })
        .collect()
}

/// The tool's schema as Anthropic requires it: an object schema with its `type`.
fn input_schema(parameters: &Value) -> Value {
    let mut schema = match parameters {
        Value::Object(schema) => schema.clone(),
        _ => Map::new(),
    };
    schema
        .entry("type")
        .or_insert_with(|| Value::from("object"));
    schema.into()
}

/// `tool_choice`, carrying `parallel_tool_calls` as `disable_parallel_tool_use` (on `auto` when
/// the client chose nothing). Without tools Anthropic rejects any choice: a forced call is then
/// noted, `auto` and `none` mean nothing anyway.
fn encode_tool_choice(request: &Request, removed: &mut Removed) -> Option<Value> {
    if request.tools.is_empty() {
        if let Some(ToolChoice::Required | ToolChoice::Tool(_)) = request.tool_choice {
            removed.note("tool_choice");
        }
        return None;
    }
    let mut choice = match &request.tool_choice {
        None if request.parallel_tool_calls == Some(false) => json!({ "type": "auto" }),
        None => return None,
        Some(ToolChoice::None) => return Some(json!({ "type": "none" })),
        Some(ToolChoice::Auto) => json!({ "type": "auto" }),
        Some(ToolChoice::Required) => json!({ "type": "any" }),
        Some(ToolChoice::Tool(name)) => json!({ "type": "tool", "name": name }),
    };
    if let Some(parallel) = request.parallel_tool_calls {
        choice["disable_parallel_tool_use"] = (!parallel).into();
    }
    Some(choice)
}

/// `thinking` for the request's reasoning, with the budget kept below `max_tokens`. Dropped
/// (noted as `reasoning`) where Anthropic would reject it: no room for the minimum budget, a
/// forced tool call, or a tool-use turn in progress that opens without thinking (as one
/// translated from another format does).
fn encode_thinking(
    request: &Request,
    max_tokens: u64,
    messages: &[Value],
    removed: &mut Removed,
) -> Option<Value> {
    let budget = request
        .reasoning
        .as_ref()?
        .budget()
        .min(max_tokens.saturating_sub(1));
    let forced = !request.tools.is_empty()
        && matches!(
            request.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Tool(_))
        );
    if budget < MIN_THINKING_BUDGET || forced || !tool_turn_opens_with_thinking(messages) {
        removed.note("reasoning");
        return None;
    }
    Some(json!({ "type": "enabled", "budget_tokens": budget }))
}

/// Whether the last assistant turn, if it called tools, starts with a thinking block (Anthropic
/// requires it of the turn whose tool results are being answered while thinking is on).
fn tool_turn_opens_with_thinking(messages: &[Value]) -> bool {
    let last = messages
        .iter()
        .rev()
        .find(|turn| turn["role"] == "assistant");
    let Some(blocks) = last.and_then(|turn| turn["content"].as_array()) else {
        return true;
    };
    let calls_tools = blocks.iter().any(|block| block["type"] == "tool_use");
    let first = blocks.first().and_then(|block| block["type"].as_str());
    !calls_tools || matches!(first, Some("thinking" | "redacted_thinking"))
}

// ---- Answers ----------------------------------------------------------------------------------

/// Anthropic's token counters, as a message and its stream events report them
/// (`input_tokens` excludes the cache).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
}

impl Counters {
    /// Takes the counters `usage` carries; the ones it leaves out keep their value.
    fn update(&mut self, usage: &Value) {
        let fields = [
            ("input_tokens", &mut self.input),
            ("output_tokens", &mut self.output),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("cache_creation_input_tokens", &mut self.cache_write),
        ];
        for (key, counter) in fields {
            if let Some(count) = usage.get(key).and_then(Value::as_u64) {
                *counter = count;
            }
        }
    }

    fn usage(self) -> Usage {
        Usage {
            input: self.input + self.cache_read + self.cache_write,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            reasoning: 0,
        }
    }
}

/// Anthropic's `usage` object for `usage`.
fn usage_json(usage: &Usage) -> Value {
    let uncached = usage
        .input
        .saturating_sub(usage.cache_read)
        .saturating_sub(usage.cache_write);
    json!({
        "input_tokens": uncached,
        "output_tokens": usage.output,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
    })
}

fn decode_finish(stop_reason: Option<&str>, stop_sequence: Option<&str>) -> Option<Finish> {
    Some(match stop_reason? {
        "max_tokens" | "model_context_window_exceeded" => Finish::Length,
        "tool_use" => Finish::ToolUse,
        "stop_sequence" => Finish::StopSequence(stop_sequence.map(str::to_owned)),
        "refusal" => Finish::ContentFilter,
        "pause_turn" => Finish::Pause,
        // `end_turn`, and reasons newer than this code: the turn ended.
        _ => Finish::Stop,
    })
}

/// `stop_reason` and `stop_sequence`.
fn encode_finish(finish: Option<&Finish>) -> (Value, Value) {
    let reason = match finish {
        None => return (Value::Null, Value::Null),
        Some(Finish::StopSequence(sequence)) => {
            return ("stop_sequence".into(), sequence.clone().into())
        }
        Some(Finish::Stop) => "end_turn",
        Some(Finish::Length) => "max_tokens",
        Some(Finish::ToolUse) => "tool_use",
        Some(Finish::ContentFilter) => "refusal",
        Some(Finish::Pause) => "pause_turn",
    };
    (reason.into(), Value::Null)
}

/// A content block of an answer; `None` for parts an answer does not hold (images, results).
fn answer_block(part: &Part) -> Option<Value> {
    match part {
        Part::Text(text) => Some(json!({ "type": "text", "text": text.text })),
        // SDKs require `signature`: an empty one marks thinking from another format.
        Part::Thinking { text, signature } => Some(json!({
            "type": "thinking",
            "thinking": text,
            "signature": signature.as_deref().unwrap_or_default(),
        })),
        Part::RedactedThinking { data } => {
            Some(json!({ "type": "redacted_thinking", "data": data }))
        }
        Part::ToolCall {
            id,
            name,
            arguments,
        } => Some(json!({
            "type": "tool_use",
            "id": id,
            "name": name,
            "input": parse_input(arguments).unwrap_or_else(|| json!({})),
        })),
        Part::Image(_) | Part::ToolResult { .. } => None,
    }
}

// ---- Streams ----------------------------------------------------------------------------------

/// Reads Anthropic's stream events (`message_start`, `content_block_*`, `message_delta`,
/// `message_stop`, `error`). `redacted_thinking` blocks have no [`Delta`] and are skipped, as are
/// server-tool blocks.
#[derive(Debug, Default)]
pub struct MessagesDecoder {
    counters: Counters,
    /// Content-block index → tool-call index, for the `tool_use` blocks seen so far.
    tools: HashMap<u64, usize>,
}

impl StreamDecoder for MessagesDecoder {
    fn event(&mut self, name: Option<&str>, data: &str, out: &mut Vec<Delta>) {
        // Content block deltas, most of a stream, are read without a `Value`.
        if let Some(event) = parse_object::<BlockDeltaEvent>(data) {
            if event.kind.as_deref().or(name) == Some("content_block_delta") {
                if let Some(delta) = event.delta {
                    self.block_delta(event.index, delta, out);
                }
                return;
            }
        }
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let kind = event.get("type").and_then(Value::as_str).or(name);
        match kind.unwrap_or_default() {
            "message_start" => self.message_start(&event, out),
            "content_block_start" => self.block_start(&event, out),
            "content_block_delta" => {
                if let Some(delta) = event.get("delta") {
                    let index = event.get("index").and_then(Value::as_u64);
                    self.block_delta(index, BlockDeltaView::of(delta), out);
                }
            }
            "message_delta" => self.message_delta(&event, out),
            "message_stop" => out.push(Delta::Done),
            "error" => out.push(error_delta(&event)),
            _ => {}
        }
    }
}

impl MessagesDecoder {
    fn message_start(&mut self, event: &Map<String, Value>, out: &mut Vec<Delta>) {
        let message = event.get("message");
        let text = |key| {
            message
                .and_then(|message| message.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        out.push(Delta::Start {
            id: text("id"),
            model: text("model"),
            created: 0,
        });
        if let Some(usage) = message.and_then(|message| message.get("usage")) {
            self.counters.update(usage);
        }
        out.push(Delta::Usage(self.counters.usage()));
    }

    fn block_start(&mut self, event: &Map<String, Value>, out: &mut Vec<Delta>) {
        let (Some(index), Some(block)) = (
            event.get("index").and_then(Value::as_u64),
            event.get("content_block"),
        ) else {
            return;
        };
        let text = |key| Str::at(block, key);
        match &*text("type") {
            "text" => push_text(out, Delta::Text, text("text")),
            "thinking" => {
                push_text(out, Delta::Thinking, text("thinking"));
                push_text(out, Delta::ThinkingSignature, text("signature"));
            }
            "tool_use" => {
                let tool = self.tools.len();
                self.tools.insert(index, tool);
                out.push(Delta::ToolCall {
                    index: tool,
                    id: text("id").into(),
                    name: text("name").into(),
                });
                // Streamed inputs start as `{}` and arrive in deltas; a filled one is the whole.
                let input = block.get("input").and_then(Value::as_object);
                if let Some(input) = input.filter(|input| !input.is_empty()) {
                    out.push(Delta::ToolArguments {
                        index: tool,
                        fragment: Value::from(input.clone()).to_string(),
                    });
                }
            }
            _ => {}
        }
    }

    /// A `content_block_delta`: the block's `index` and its `delta`.
    fn block_delta(&self, index: Option<u64>, delta: BlockDeltaView, out: &mut Vec<Delta>) {
        match &*delta.kind {
            "text_delta" => push_text(out, Delta::Text, delta.text),
            "thinking_delta" => push_text(out, Delta::Thinking, delta.thinking),
            "signature_delta" => push_text(out, Delta::ThinkingSignature, delta.signature),
            "input_json_delta" => {
                let tool = index.and_then(|index| self.tools.get(&index));
                if let Some(&index) = tool {
                    push_text(
                        out,
                        |fragment| Delta::ToolArguments { index, fragment },
                        delta.partial_json,
                    );
                }
            }
            _ => {}
        }
    }

    fn message_delta(&mut self, event: &Map<String, Value>, out: &mut Vec<Delta>) {
        if let Some(usage) = event.get("usage") {
            self.counters.update(usage);
            out.push(Delta::Usage(self.counters.usage()));
        }
        let delta = event.get("delta");
        let field = |key| {
            delta
                .and_then(|delta| delta.get(key))
                .and_then(Value::as_str)
        };
        if let Some(finish) = decode_finish(field("stop_reason"), field("stop_sequence")) {
            out.push(Delta::Finish(finish));
        }
    }
}

/// An event read as a `content_block_delta` (any other kind is read as a `Value`).
#[derive(Deserialize)]
struct BlockDeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    index: Option<u64>,
    #[serde(borrow)]
    delta: Option<BlockDeltaView<'a>>,
}

/// The `delta` of a `content_block_delta`, from the event's text or ([`BlockDeltaView::of`]) a
/// `Value`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct BlockDeltaView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(borrow)]
    thinking: Str<'a>,
    #[serde(borrow)]
    signature: Str<'a>,
    #[serde(borrow)]
    partial_json: Str<'a>,
}

impl<'a> BlockDeltaView<'a> {
    /// The view of a `delta` parsed as a `Value`: a field of another type reads as absent.
    fn of(delta: &'a Value) -> Self {
        BlockDeltaView {
            kind: Str::at(delta, "type"),
            text: Str::at(delta, "text"),
            thinking: Str::at(delta, "thinking"),
            signature: Str::at(delta, "signature"),
            partial_json: Str::at(delta, "partial_json"),
        }
    }
}

/// Pushes `make(text)` unless `text` is empty.
fn push_text(out: &mut Vec<Delta>, make: impl FnOnce(String) -> Delta, text: Str) {
    if !text.is_empty() {
        out.push(make(text.into()));
    }
}

fn error_delta(event: &Map<String, Value>) -> Delta {
    let error = event.get("error");
    let field = |key| {
        error
            .and_then(|error| error.get(key))
            .and_then(Value::as_str)
    };
    Delta::Error {
        kind: field("type").unwrap_or("api_error").to_owned(),
        message: field("message").unwrap_or_default().to_owned(),
    }
}

/// The content block a [`MessagesEncoder`] has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// `signed` once its signature went out: more thinking then starts a new block.
    Thinking {
        signed: bool,
    },
    /// A `tool_use` block for tool call number `.0`.
    Tool(usize),
}

/// Writes [`Delta`]s as Anthropic's stream events.
///
/// Content blocks open on the first delta of their kind and close when another kind or another
/// tool call starts. Tool calls are assumed to stream one after another (as the OpenAI formats do in
/// practice): argument fragments of a call whose block is no longer open are dropped. The stop reason and usage
/// are held until [`Delta::Done`], which writes `message_delta` (with the full usage, input and
/// cache counts included, which the SDKs take from it) and `message_stop`.
#[derive(Debug, Default)]
pub struct MessagesEncoder {
    started: bool,
    /// `message_stop` or an error went out: nothing more is written.
    ended: bool,
    /// Content blocks opened so far (the index of the next one).
    blocks: usize,
    open: Option<Block>,
    usage: Usage,
    finish: Option<Finish>,
}

impl MessagesEncoder {
    /// An encoder for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": { "input_tokens": 0, "output_tokens": 0 },
        });
        write_event(
            out,
            "message_start",
            &json!({ "type": "message_start", "message": message }),
        );
    }

    /// The index of the open `block`, opening it (as `content_block()`) when another one is open.
    fn open(
        &mut self,
        block: Block,
        content_block: impl FnOnce() -> Value,
        out: &mut Vec<u8>,
    ) -> usize {
        if self.open != Some(block) {
            self.start("", "", out);
            self.close(out);
            let event = json!({
                "type": "content_block_start",
                "index": self.blocks,
                "content_block": content_block(),
            });
            write_event(out, "content_block_start", &event);
            self.open = Some(block);
            self.blocks += 1;
        }
        self.blocks - 1
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let event = json!({ "type": "content_block_stop", "index": self.blocks - 1 });
            write_event(out, "content_block_stop", &event);
        }
    }

    fn text(&mut self, text: String, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = self.open(Block::Text, || json!({ "type": "text", "text": "" }), out);
        let delta = DeltaOut {
            text: Some(&text),
            ..DeltaOut::of("text_delta")
        };
        write_delta(out, index, delta);
    }

    fn thinking(&mut self, thinking: String, out: &mut Vec<u8>) {
        if thinking.is_empty() {
            return;
        }
        let index = self.open_thinking(out);
        let delta = DeltaOut {
            thinking: Some(&thinking),
            ..DeltaOut::of("thinking_delta")
        };
        write_delta(out, index, delta);
    }

    fn signature(&mut self, signature: String, out: &mut Vec<u8>) {
        let index = self.open_thinking(out);
        self.open = Some(Block::Thinking { signed: true });
        let delta = DeltaOut {
            signature: Some(&signature),
            ..DeltaOut::of("signature_delta")
        };
        write_delta(out, index, delta);
    }

    fn open_thinking(&mut self, out: &mut Vec<u8>) -> usize {
        let block = || json!({ "type": "thinking", "thinking": "", "signature": "" });
        self.open(Block::Thinking { signed: false }, block, out)
    }

    fn tool_call(&mut self, index: usize, id: String, name: String, out: &mut Vec<u8>) {
        // A new call always gets its own block, even if one for `index` is open.
        self.close(out);
        let block = || json!({ "type": "tool_use", "id": id, "name": name, "input": {} });
        self.open(Block::Tool(index), block, out);
    }

    fn tool_arguments(&mut self, index: usize, fragment: String, out: &mut Vec<u8>) {
        if fragment.is_empty() || self.open != Some(Block::Tool(index)) {
            return;
        }
        let delta = DeltaOut {
            partial_json: Some(&fragment),
            ..DeltaOut::of("input_json_delta")
        };
        write_delta(out, self.blocks - 1, delta);
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        self.start("", "", out);
        self.close(out);
        let (stop_reason, stop_sequence) = encode_finish(self.finish.as_ref());
        let event = json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": stop_sequence },
            "usage": usage_json(&self.usage),
        });
        write_event(out, "message_delta", &event);
        write_event(out, "message_stop", &json!({ "type": "message_stop" }));
        self.ended = true;
    }

    fn error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        let event = json!({ "type": "error", "error": { "type": kind, "message": message } });
        write_event(out, "error", &event);
        self.ended = true;
    }
}

impl StreamEncoder for MessagesEncoder {
    fn delta(&mut self, delta: Delta, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match delta {
            Delta::Start { id, model, .. } => self.start(&id, &model, out),
            Delta::Text(text) => self.text(text, out),
            Delta::Thinking(thinking) => self.thinking(thinking, out),
            Delta::ThinkingSignature(signature) => self.signature(signature, out),
            Delta::ToolCall { index, id, name } => self.tool_call(index, id, name, out),
            Delta::ToolArguments { index, fragment } => self.tool_arguments(index, fragment, out),
            Delta::Usage(usage) => self.usage = usage,
            Delta::Finish(finish) => self.finish = Some(finish),
            Delta::Error { kind, message } => self.error(&kind, &message, out),
            Delta::Done => self.done(out),
        }
    }
}

fn write_delta(out: &mut Vec<u8>, index: usize, delta: DeltaOut) {
    let event = BlockDeltaOut {
        delta,
        index,
        kind: "content_block_delta",
    };
    sse_write::event(out, Some("content_block_delta"), &event);
}

fn write_event(out: &mut Vec<u8>, name: &str, data: &Value) {
    sse_write::event(out, Some(name), data);
}

// A `content_block_delta` as written, without a `Value`: fields in alphabetical order, as a
// `Value` writes them (see `sse_write`).

#[derive(Serialize)]
struct BlockDeltaOut<'a> {
    delta: DeltaOut<'a>,
    index: usize,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A delta: its one text field and its type.
#[derive(Serialize)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_json: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl DeltaOut<'_> {
    /// A delta of type `kind`, its text field still to set.
    fn of(kind: &'static str) -> Self {
        DeltaOut {
            partial_json: None,
            signature: None,
            text: None,
            thinking: None,
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn decode(body: Value) -> (Request, Vec<String>) {
        let mut removed = Removed::default();
        let request = Messages::decode_request(&object(body), &mut removed).expect("valid");
        let mut names = removed.names().to_vec();
        names.sort();
        (request, names)
    }

    fn encode(request: &Request) -> (Value, Vec<String>) {
        let mut removed = Removed::default();
        let body = Messages::encode_request(request, &mut removed);
        (body.into(), removed.names().to_vec())
    }

    fn decode_error(body: Value) -> String {
        let mut removed = Removed::default();
        Messages::decode_request(&object(body), &mut removed)
            .expect_err("invalid")
            .0
    }

    fn text(text: &str) -> Part {
        Part::Text(TextPart {
            text: text.into(),
            cache: None,
        })
    }

    fn message(role: Role, content: Vec<Part>) -> Message {
        Message { role, content }
    }

    fn call(id: &str, name: &str, arguments: &str) -> Part {
        Part::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn result(id: &str, content: &str) -> Part {
        Part::ToolResult {
            id: id.into(),
            content: vec![text(content)],
            is_error: false,
        }
    }

    fn ephemeral() -> Option<Value> {
        Some(json!({ "type": "ephemeral" }))
    }

    fn weather_schema() -> Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    }

    #[test]
    fn decodes_a_request_with_tools_images_and_dropped_fields() {
        let (request, removed) = decode(json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 2048,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                    {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking the weather.", "citations": null},
                    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C",
                     "cache_control": {"type": "ephemeral"}}
                ]},
                {"role": "assistant", "content": "Fine."},
                {"role": "user", "content": [{"type": "document", "source": {}}]}
            ],
            "tools": [
                {"name": "get_weather", "description": "Weather by city", "input_schema": weather_schema(),
                 "cache_control": {"type": "ephemeral"}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["\n\nHuman:"],
            "stream": true,
            "metadata": {"user_id": "user-42", "trace": "t1"},
            "service_tier": "auto"
        }));
        let expected = Request {
            model: "claude-sonnet-4-5".into(),
            system: vec![TextPart {
                text: "You are terse.".into(),
                cache: ephemeral(),
            }],
            messages: vec![
                message(
                    Role::User,
                    vec![
                        text("What is in this image?"),
                        Part::Image(Image {
                            source: ImageSource::Base64 {
                                media_type: "image/png".into(),
                                data: "iVBORw0KGgo=".into(),
                            },
                            cache: None,
                        }),
                        Part::Image(Image {
                            source: ImageSource::Url("https://example.com/cat.jpg".into()),
                            cache: None,
                        }),
                    ],
                ),
                message(
                    Role::Assistant,
                    vec![
                        text("Checking the weather."),
                        call("toolu_01A", "get_weather", r#"{"city":"Paris"}"#),
                    ],
                ),
                message(Role::User, vec![result("toolu_01A", "18°C")]),
                message(Role::Assistant, vec![text("Fine.")]),
            ],
            tools: vec![Tool {
                name: "get_weather".into(),
                description: Some("Weather by city".into()),
                parameters: weather_schema(),
                strict: None,
                cache: ephemeral(),
            }],
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(false),
            max_tokens: Some(2048),
            temperature: Some(0.5),
            top_p: Some(0.9),
            stop: vec!["\n\nHuman:".into()],
            stream: true,
            reasoning: None,
            user: Some("user-42".into()),
        };
        assert_eq!(request, expected);
        assert_eq!(
            removed,
            [
                "messages[0].content[3].source.type=file",
                "messages[0].content[4].type=document",
                "messages[1].content[2].type=server_tool_use",
                "messages[2].content[0].cache_control",
                "messages[4].content[0].type=document",
                "metadata.trace",
                "service_tier",
                "tools[1]",
                "top_k",
            ]
        );
    }

    #[test]
    fn decodes_thinking_settings_and_string_forms() {
        let (request, removed) = decode(json!({
            "model": "claude-opus-4-1",
            "max_tokens": 16000,
            "system": "Be brief.",
            "thinking": {"type": "enabled", "budget_tokens": 10000},
            "messages": [{"role": "user", "content": "Hi"}]
        }));
        assert!(removed.is_empty());
        assert_eq!(
            request.system,
            vec![TextPart {
                text: "Be brief.".into(),
                cache: None
            }]
        );
        assert_eq!(
            request.messages,
            vec![message(Role::User, vec![text("Hi")])]
        );
        assert_eq!(
            request.reasoning,
            Some(Reasoning {
                budget_tokens: Some(10000),
                effort: None
            })
        );
        let thinking = |value: Value| {
            decode(json!({"model": "m", "messages": [], "thinking": value}))
                .0
                .reasoning
        };
        assert_eq!(thinking(json!({"type": "disabled"})), None);
        assert_eq!(
            thinking(json!({"type": "adaptive"})),
            Some(Reasoning {
                budget_tokens: None,
                effort: None
            })
        );
    }

    #[test]
    fn decodes_tool_results_with_blocks_and_errors() {
        let (request, removed) = decode(json!({
            "model": "m",
            "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true, "content": [
                    {"type": "text", "text": "failed"},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {"type": "search_result", "source": "s", "title": "t", "content": []}
                ]},
                {"type": "tool_result", "tool_use_id": "toolu_2"}
            ]}]
        }));
        assert_eq!(
            removed,
            ["messages[0].content[0].content[2].type=search_result"]
        );
        assert_eq!(
            request.messages[0].content,
            vec![
                Part::ToolResult {
                    id: "toolu_1".into(),
                    content: vec![
                        text("failed"),
                        Part::Image(Image {
                            source: ImageSource::Url("https://x/y.png".into()),
                            cache: None
                        })
                    ],
                    is_error: true,
                },
                Part::ToolResult {
                    id: "toolu_2".into(),
                    content: vec![],
                    is_error: false
                },
            ]
        );
    }

    #[test]
    fn a_system_message_inside_the_conversation_is_system_text() {
        let mut removed = Removed::default();
        let request = Messages::decode_request(
            &object(json!({"model": "gpt-4o", "system": "first", "messages": [
                {"role": "system", "content": [{"type": "text", "text": "second"}]},
                {"role": "user", "content": "hi"}]})),
            &mut removed,
        )
        .unwrap();
        let system: Vec<&str> = request.system.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(system, ["first", "second"]);
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].role, Role::User);
        assert!(removed.is_empty());
    }

    #[test]
    fn rejects_requests_that_are_not_messages_requests() {
        assert_eq!(
            decode_error(json!({"model": "m", "messages": {}})),
            "messages: expected an array"
        );
        assert_eq!(
            decode_error(json!({"model": "m"})),
            "messages: expected an array"
        );
        assert_eq!(
            decode_error(json!({"model": "m", "messages": [
                {"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]})),
            "messages[1].role: unknown role \"tool\""
        );
        assert_eq!(
            decode_error(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "a"}]}]})
            ),
            "messages[0].content[0].type: expected a string"
        );
        assert_eq!(
            decode_error(json!({"model": "m", "messages": [{"role": "user", "content": 3}]})),
            "messages[0].content: expected a string or an array of content blocks"
        );
        assert_eq!(
            decode_error(
                json!({"model": "m", "messages": [], "tool_choice": {"type": "sometimes"}})
            ),
            "tool_choice.type: unknown type \"sometimes\""
        );
        assert_eq!(
            decode_error(json!({"model": "m", "messages": [], "max_tokens": "many"})),
            "max_tokens: expected a non-negative integer"
        );
        assert_eq!(
            decode_error(json!({"model": "m", "messages": [], "tools": [{"input_schema": {}}]})),
            "tools[0].name: expected a string"
        );
    }

    #[test]
    fn encodes_a_chat_shaped_conversation_with_alternating_turns() {
        let request = Request {
            model: "claude-haiku-4-5".into(),
            system: vec![TextPart {
                text: "Be helpful.".into(),
                cache: None,
            }],
            messages: vec![
                message(Role::User, vec![text("Weather in Paris and Rome?")]),
                message(
                    Role::Assistant,
                    vec![
                        text(""),
                        Part::Thinking {
                            text: "from another format".into(),
                            signature: None,
                        },
                        call("call_1", "get_weather", r#"{"city":"Paris"}"#),
                        call("call_2", "get_weather", ""),
                        call("call_3", "get_weather", "{not json"),
                    ],
                ),
                message(Role::User, vec![result("call_1", "18°C")]),
                message(Role::User, vec![result("call_2", "21°C")]),
                message(
                    Role::User,
                    vec![
                        text("And tomorrow?"),
                        result("call_3", "bad arguments"),
                        Part::Image(Image {
                            source: ImageSource::Base64 {
                                media_type: "image/jpeg".into(),
                                data: "/9j/4AAQ".into(),
                            },
                            cache: ephemeral(),
                        }),
                    ],
                ),
            ],
            tools: vec![Tool {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"properties": {"city": {"type": "string"}}}),
                strict: Some(true),
                cache: None,
            }],
            tool_choice: None,
            parallel_tool_calls: Some(false),
            max_tokens: None,
            temperature: Some(0.2),
            top_p: None,
            stop: vec!["END".into()],
            stream: true,
            reasoning: None,
            user: Some("u-1".into()),
        };
        let (body, removed) = encode(&request);
        assert_eq!(
            body,
            json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 4096,
                "system": "Be helpful.",
                "messages": [
                    {"role": "user", "content": "Weather in Paris and Rome?"},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
                        {"type": "tool_use", "id": "call_3", "name": "get_weather", "input": {}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": "21°C"},
                        {"type": "tool_result", "tool_use_id": "call_3", "content": "bad arguments"},
                        {"type": "text", "text": "And tomorrow?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
                         "cache_control": {"type": "ephemeral"}}
                    ]}
                ],
                "tools": [{"name": "get_weather", "input_schema":
                    {"type": "object", "properties": {"city": {"type": "string"}}}}],
                "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
                "temperature": 0.2,
                "stop_sequences": ["END"],
                "stream": true,
                "metadata": {"user_id": "u-1"}
            })
        );
        assert_eq!(
            removed,
            [
                "messages[1].content[1].type=thinking",
                "messages[1].content[4].arguments",
                "tools[0].strict"
            ]
        );
    }

    #[test]
    fn encodes_tool_choices() {
        let choice = |tool_choice, parallel| {
            let request = Request {
                tools: vec![Tool {
                    name: "f".into(),
                    description: None,
                    parameters: Value::Null,
                    strict: None,
                    cache: None,
                }],
                tool_choice,
                parallel_tool_calls: parallel,
                ..Request::default()
            };
            encode(&request).0["tool_choice"].clone()
        };
        assert_eq!(choice(None, None), Value::Null);
        assert_eq!(
            choice(Some(ToolChoice::Auto), None),
            json!({"type": "auto"})
        );
        assert_eq!(
            choice(Some(ToolChoice::None), Some(false)),
            json!({"type": "none"})
        );
        assert_eq!(
            choice(Some(ToolChoice::Required), Some(true)),
            json!({"type": "any", "disable_parallel_tool_use": false})
        );
        assert_eq!(
            choice(Some(ToolChoice::Tool("f".into())), Some(false)),
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
        );

        let decoded = decode(json!({"model": "m", "messages": [],
            "tool_choice": {"type": "tool", "name": "f"}}));
        assert_eq!(decoded.0.tool_choice, Some(ToolChoice::Tool("f".into())));
        assert_eq!(decoded.0.parallel_tool_calls, None);

        let no_tools = Request {
            tool_choice: Some(ToolChoice::Required),
            ..Request::default()
        };
        let (body, removed) = encode(&no_tools);
        assert_eq!(body.get("tool_choice"), None);
        assert_eq!(removed, ["tool_choice"]);
    }

    #[test]
    fn encodes_thinking_within_max_tokens_without_sampling() {
        let request = |max_tokens, budget_tokens, effort: Option<&str>| Request {
            max_tokens,
            temperature: Some(0.7),
            top_p: Some(0.9),
            reasoning: Some(Reasoning {
                budget_tokens,
                effort: effort.map(str::to_owned),
            }),
            ..Request::default()
        };

        let (body, removed) = encode(&request(Some(20000), Some(8000), None));
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 8000})
        );
        assert_eq!(body["max_tokens"], 20000);
        assert_eq!(body.get("temperature"), None);
        assert_eq!(body.get("top_p"), None);
        assert_eq!(removed, ["temperature", "top_p"]);

        let (body, _) = encode(&request(None, None, Some("high")));
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 4095})
        );
        assert_eq!(body["max_tokens"], 4096);

        let (body, _) = encode(&request(Some(1500), Some(1200), None));
        assert_eq!(body["thinking"]["budget_tokens"], 1200);
        let (body, _) = encode(&request(Some(1025), Some(3000), None));
        assert_eq!(body["thinking"]["budget_tokens"], 1024);

        let (body, removed) = encode(&request(Some(1024), Some(3000), None));
        assert_eq!(body.get("thinking"), None);
        assert_eq!(body["temperature"], 0.7);
        assert_eq!(body["top_p"], 0.9);
        assert_eq!(removed, ["reasoning"]);
    }

    #[test]
    fn drops_thinking_where_anthropic_would_reject_it() {
        let tool = Tool {
            name: "f".into(),
            description: None,
            parameters: json!({"type": "object"}),
            strict: None,
            cache: None,
        };
        let request = |tool_choice, thinking: Option<&str>| {
            let mut called = vec![call("toolu_1", "f", "{}")];
            if let Some(signature) = thinking {
                called.insert(
                    0,
                    Part::Thinking {
                        text: "Call f.".into(),
                        signature: Some(signature.into()),
                    },
                );
            }
            Request {
                messages: vec![
                    message(Role::User, vec![text("Go")]),
                    message(Role::Assistant, called),
                    message(Role::User, vec![result("toolu_1", "done")]),
                ],
                tools: vec![tool.clone()],
                tool_choice,
                max_tokens: Some(8000),
                reasoning: Some(Reasoning {
                    budget_tokens: Some(2000),
                    effort: None,
                }),
                ..Request::default()
            }
        };
        let (body, removed) = encode(&request(None, Some("EqQB")));
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 2000})
        );
        assert!(removed.is_empty());

        // A tool loop from a format without Anthropic signatures.
        let (body, removed) = encode(&request(None, None));
        assert_eq!(body.get("thinking"), None);
        assert_eq!(removed, ["reasoning"]);

        let (body, removed) = encode(&request(Some(ToolChoice::Required), Some("EqQB")));
        assert_eq!(body.get("thinking"), None);
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(removed, ["reasoning"]);
    }

    #[test]
    fn a_rich_request_survives_decode_encode_decode() {
        let client = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 8000,
            "system": [
                {"type": "text", "text": "You are a weather bot."},
                {"type": "text", "text": "Long reference text.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Need the city.", "signature": "EqQBCgIYAhIM1gbcDa9G"},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris", "days": 2}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C"},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": true, "content": [
                        {"type": "text", "text": "no city"},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/err.png"}}
                    ]},
                    {"type": "text", "text": "Thanks"}
                ]},
                {"role": "assistant", "content": "It is sunny."}
            ],
            "tools": [{"name": "get_weather", "description": "Weather by city",
                       "input_schema": weather_schema(), "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": false},
            "stop_sequences": ["STOP", "END"],
            "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "metadata": {"user_id": "user-7"}
        });
        let (first, removed) = decode(client);
        assert!(removed.is_empty(), "{removed:?}");
        assert_eq!(first.messages.len(), 4);
        let (body, removed) = encode(&first);
        assert!(removed.is_empty(), "{removed:?}");
        let (second, removed) = decode(body);
        assert!(removed.is_empty(), "{removed:?}");
        assert_eq!(second, first);
    }

    fn anthropic_answer() -> Value {
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "The user wants Paris.", "signature": "EqQBCgIYAhIM"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"},
                {"type": "text", "text": "Let me check.", "citations": null},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "paris"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 20, "cache_creation_input_tokens": 300,
                      "cache_read_input_tokens": 2000, "output_tokens": 95,
                      "service_tier": "standard"}
        })
    }

    #[test]
    fn decodes_an_answer() {
        let response = Messages::decode_response(&anthropic_answer()).expect("valid");
        assert_eq!(
            response,
            Response {
                id: "msg_01XFDUDYJgAACzvnptvVoYEL".into(),
                model: "claude-sonnet-4-5-20250929".into(),
                created: 0,
                content: vec![
                    Part::Thinking {
                        text: "The user wants Paris.".into(),
                        signature: Some("EqQBCgIYAhIM".into())
                    },
                    Part::RedactedThinking {
                        data: "EmwKAhgBEgy3".into()
                    },
                    text("Let me check."),
                    call(
                        "toolu_01A09q90qw90lq917835lq9",
                        "get_weather",
                        r#"{"city":"Paris"}"#
                    ),
                ],
                finish: Some(Finish::ToolUse),
                usage: Usage {
                    input: 2320,
                    output: 95,
                    cache_read: 2000,
                    cache_write: 300,
                    reasoning: 0
                },
            }
        );
        assert_eq!(
            Messages::decode_response(&json!({"type": "message"})),
            Err(Invalid::new("content: expected an array"))
        );
    }

    #[test]
    fn reads_every_stop_reason() {
        let finish = |reason: Value, sequence: Value| {
            let mut answer = anthropic_answer();
            answer["stop_reason"] = reason;
            answer["stop_sequence"] = sequence;
            Messages::decode_response(&answer).expect("valid").finish
        };
        assert_eq!(finish("end_turn".into(), Value::Null), Some(Finish::Stop));
        assert_eq!(
            finish("max_tokens".into(), Value::Null),
            Some(Finish::Length)
        );
        assert_eq!(
            finish("stop_sequence".into(), "###".into()),
            Some(Finish::StopSequence(Some("###".into())))
        );
        assert_eq!(
            finish("refusal".into(), Value::Null),
            Some(Finish::ContentFilter)
        );
        assert_eq!(
            finish("pause_turn".into(), Value::Null),
            Some(Finish::Pause)
        );
        assert_eq!(finish(Value::Null, Value::Null), None);
    }

    #[test]
    fn encodes_an_answer() {
        let response = Response {
            id: "chatcmpl-9".into(),
            model: "gpt-4o".into(),
            created: 1_700_000_000,
            content: vec![
                Part::Thinking {
                    text: "Reasoning summary".into(),
                    signature: None,
                },
                text("Here you go."),
                call("call_abc", "lookup", r#"{"q":"rust"}"#),
                call("call_def", "lookup", r#"{"q":"#),
            ],
            finish: Some(Finish::StopSequence(None)),
            usage: Usage {
                input: 1200,
                output: 80,
                cache_read: 1024,
                cache_write: 0,
                reasoning: 30,
            },
        };
        assert_eq!(
            Messages::encode_response(&response),
            json!({
                "id": "chatcmpl-9",
                "type": "message",
                "role": "assistant",
                "model": "gpt-4o",
                "content": [
                    {"type": "thinking", "thinking": "Reasoning summary", "signature": ""},
                    {"type": "text", "text": "Here you go."},
                    {"type": "tool_use", "id": "call_abc", "name": "lookup", "input": {"q": "rust"}},
                    {"type": "tool_use", "id": "call_def", "name": "lookup", "input": {}}
                ],
                "stop_reason": "stop_sequence",
                "stop_sequence": null,
                "usage": {"input_tokens": 176, "output_tokens": 80,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024}
            })
        );
        let answer = anthropic_answer();
        let decoded = Messages::decode_response(&answer).expect("valid");
        let encoded = Messages::encode_response(&decoded);
        assert_eq!(encoded["usage"]["input_tokens"], 20);
        assert_eq!(encoded["usage"]["cache_creation_input_tokens"], 300);
        assert_eq!(encoded["stop_reason"], "tool_use");
        assert_eq!(
            encoded["content"][2],
            json!({"type": "text", "text": "Let me check."})
        );
    }

    /// Feeds an SSE text (as Anthropic sends it) to a decoder.
    fn decode_stream(sse: &str) -> Vec<Delta> {
        let mut decoder = MessagesDecoder::default();
        let mut out = Vec::new();
        for (name, data) in parse_sse(sse) {
            decoder.event(name.as_deref(), &data, &mut out);
        }
        out
    }

    fn parse_sse(sse: &str) -> Vec<(Option<String>, String)> {
        sse.split("\n\n")
            .filter(|event| !event.trim().is_empty())
            .map(|event| {
                let mut name = None;
                let mut data = Vec::new();
                for line in event.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push(value);
                    }
                }
                (name, data.join("\n"))
            })
            .collect()
    }

    fn encode_stream(deltas: Vec<Delta>) -> String {
        let mut encoder = MessagesEncoder::new();
        let mut out = Vec::new();
        for delta in deltas {
            encoder.delta(delta, &mut out);
        }
        String::from_utf8(out).expect("utf-8")
    }

    /// The events of an encoded stream, checking each event's name matches its `type`.
    fn events(sse: &str) -> Vec<Value> {
        parse_sse(sse)
            .into_iter()
            .map(|(name, data)| {
                let data: Value = serde_json::from_str(&data).expect("json");
                assert_eq!(name.as_deref(), data["type"].as_str());
                data
            })
            .collect()
    }

    const TOOL_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":1024,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"User wants weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9G"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" the weather."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

    fn usage(input: u64, output: u64, cache_read: u64) -> Usage {
        Usage {
            input,
            output,
            cache_read,
            cache_write: 0,
            reasoning: 0,
        }
    }

    #[test]
    fn decodes_a_stream_with_thinking_text_and_tool_calls() {
        assert_eq!(
            decode_stream(TOOL_STREAM),
            vec![
                Delta::Start {
                    id: "msg_014p7gG3wDgGV9EUtLvnow3U".into(),
                    model: "claude-sonnet-4-5-20250929".into(),
                    created: 0
                },
                Delta::Usage(usage(1496, 2, 1024)),
                Delta::Thinking("User wants weather.".into()),
                Delta::ThinkingSignature("EqQBCgIYAhIM1gbcDa9G".into()),
                Delta::Text("Okay, let's check".into()),
                Delta::Text(" the weather.".into()),
                Delta::ToolCall {
                    index: 0,
                    id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                    name: "get_weather".into()
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: "{\"location\":".into()
                },
                Delta::ToolArguments {
                    index: 0,
                    fragment: " \"San Francisco, CA\"}".into()
                },
                Delta::ToolCall {
                    index: 1,
                    id: "toolu_02".into(),
                    name: "get_time".into()
                },
                Delta::ToolArguments {
                    index: 1,
                    fragment: "{}".into()
                },
                Delta::Usage(usage(1496, 89, 1024)),
                Delta::Finish(Finish::ToolUse),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn a_stream_merges_newer_message_delta_usage_and_skips_server_tool_blocks() {
        let sse = r####"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-opus-4-1","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"query\":\"x\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgB"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_9","name":"f","input":{}}}

event: content_block_delta
data: not json

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"###"},"usage":{"input_tokens":10,"cache_creation_input_tokens":500,"cache_read_input_tokens":null,"output_tokens":42}}

event: message_stop
data: {"type":"message_stop"}
"####;
        assert_eq!(
            decode_stream(sse),
            vec![
                Delta::Start {
                    id: "msg_1".into(),
                    model: "claude-opus-4-1".into(),
                    created: 0
                },
                Delta::Usage(usage(10, 1, 0)),
                Delta::ToolCall {
                    index: 0,
                    id: "toolu_9".into(),
                    name: "f".into()
                },
                Delta::Usage(Usage {
                    input: 510,
                    output: 42,
                    cache_read: 0,
                    cache_write: 500,
                    reasoning: 0
                }),
                Delta::Finish(Finish::StopSequence(Some("###".into()))),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn decodes_a_stream_error() {
        let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"model\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
                   event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";
        let deltas = decode_stream(sse);
        assert_eq!(
            deltas.last(),
            Some(&Delta::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            })
        );
        assert_eq!(deltas.len(), 3);
    }

    #[test]
    fn encodes_a_stream_from_another_format() {
        let sse = encode_stream(vec![
            Delta::Start {
                id: "chatcmpl-1".into(),
                model: "gpt-4o".into(),
                created: 1_700_000_000,
            },
            Delta::Thinking("Plan".into()),
            Delta::Thinking(" it.".into()),
            Delta::Text(String::new()),
            Delta::Text("Hello".into()),
            Delta::Text(" there".into()),
            Delta::ToolCall {
                index: 0,
                id: "call_1".into(),
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
                id: "call_2".into(),
                name: "get_time".into(),
            },
            // Arguments of a call whose block closed are dropped (calls stream one after another).
            Delta::ToolArguments {
                index: 0,
                fragment: "late".into(),
            },
            Delta::ToolArguments {
                index: 1,
                fragment: "{}".into(),
            },
            Delta::Finish(Finish::ToolUse),
            Delta::Usage(Usage {
                input: 1500,
                output: 40,
                cache_read: 1024,
                cache_write: 0,
                reasoning: 12,
            }),
            Delta::Done,
        ]);
        assert_eq!(
            events(&sse),
            vec![
                json!({"type": "message_start", "message": {"id": "chatcmpl-1", "type": "message",
                    "role": "assistant", "model": "gpt-4o", "content": [], "stop_reason": null,
                    "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Plan"}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": " it."}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "text_delta", "text": "Hello"}}),
                json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "text_delta", "text": " there"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2, "content_block":
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
                json!({"type": "content_block_delta", "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "content_block_start", "index": 3, "content_block":
                    {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}}),
                json!({"type": "content_block_delta", "index": 3,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
                json!({"type": "content_block_stop", "index": 3}),
                json!({"type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                    "usage": {"input_tokens": 476, "output_tokens": 40,
                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024}}),
                json!({"type": "message_stop"}),
            ]
        );
    }

    #[test]
    fn a_signature_closes_its_thinking_block() {
        let sse = encode_stream(vec![
            Delta::Start {
                id: "msg_1".into(),
                model: "m".into(),
                created: 0,
            },
            Delta::ThinkingSignature("sig-a".into()),
            Delta::Thinking("second".into()),
            Delta::ThinkingSignature("sig-b".into()),
            Delta::Done,
        ]);
        let kinds: Vec<(String, Value)> = events(&sse)
            .into_iter()
            .map(|event| {
                let kind = event["type"].as_str().unwrap_or_default().to_owned();
                (kind, event["index"].clone())
            })
            .collect();
        let expected = [
            ("message_start", Value::Null),
            ("content_block_start", json!(0)),
            ("content_block_delta", json!(0)),
            ("content_block_stop", json!(0)),
            ("content_block_start", json!(1)),
            ("content_block_delta", json!(1)),
            ("content_block_delta", json!(1)),
            ("content_block_stop", json!(1)),
            ("message_delta", Value::Null),
            ("message_stop", Value::Null),
        ];
        let expected: Vec<(String, Value)> = expected
            .into_iter()
            .map(|(kind, index)| (kind.to_owned(), index))
            .collect();
        assert_eq!(kinds, expected);
        assert!(sse.contains(r#""delta":{"signature":"sig-b","type":"signature_delta"}"#));
    }

    #[test]
    fn a_stream_without_done_has_no_final_event_and_an_error_ends_it() {
        let open = encode_stream(vec![
            Delta::Start {
                id: "msg_1".into(),
                model: "m".into(),
                created: 0,
            },
            Delta::Text("partial".into()),
            Delta::Finish(Finish::Stop),
        ]);
        let kinds: Vec<Value> = events(&open)
            .into_iter()
            .map(|e| e["type"].clone())
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta"
            ]
        );

        let failed = encode_stream(vec![
            Delta::Start {
                id: "msg_1".into(),
                model: "m".into(),
                created: 0,
            },
            Delta::Text("partial".into()),
            Delta::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into(),
            },
            Delta::Text("ignored".into()),
            Delta::Done,
        ]);
        assert!(failed.ends_with(
            "event: error\ndata: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"},\"type\":\"error\"}\n\n"
        ));
        assert!(!failed.contains("ignored"));
        assert!(!failed.contains("message_stop"));
    }

    #[test]
    fn an_empty_stream_still_closes_properly() {
        let sse = encode_stream(vec![Delta::Done]);
        let kinds: Vec<Value> = events(&sse)
            .into_iter()
            .map(|e| e["type"].clone())
            .collect();
        assert_eq!(kinds, ["message_start", "message_delta", "message_stop"]);
    }

    #[test]
    fn a_stream_survives_decode_encode_decode() {
        let without_usage = |deltas: &[Delta]| -> Vec<Delta> {
            deltas
                .iter()
                .filter(|delta| !matches!(delta, Delta::Usage(_)))
                .cloned()
                .collect()
        };
        let first = decode_stream(TOOL_STREAM);
        let second = decode_stream(&encode_stream(first.clone()));
        assert_eq!(without_usage(&second), without_usage(&first));
        assert_eq!(
            second.iter().rev().find(|d| matches!(d, Delta::Usage(_))),
            Some(&Delta::Usage(usage(1496, 89, 1024)))
        );
    }
}
