//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI, Qwen through
//! DashScope's compatible mode, vLLM, the llama.cpp server.
//!
//! The answer is constrained with `response_format: {"type": "json_schema", ...}` (strict) where
//! the server supports it, or `{"type": "json_object"}` (JSON mode) where it does not.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::chat::{CallError, ChatBackend, ChatReply, ChatRequest, excerpt};
use crate::secret::Secret;

/// How the answer's format is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `json_schema` with the answer schema, strict.
    JsonSchema,
    /// `json_object`: any JSON object (the prompt describes the fields).
    JsonObject,
}

/// An OpenAI-compatible endpoint.
pub struct OpenAiBackend {
    client: reqwest::Client,
    base_url: String,
    model: String,
    api_key: Option<Secret>,
    format: ResponseFormat,
}

impl OpenAiBackend {
    /// A backend for `model` at `base_url` (up to and including `/v1`).
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        model: &str,
        api_key: Option<Secret>,
        format: ResponseFormat,
    ) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            format,
        }
    }

    /// The JSON body of `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut messages = vec![json!({"role": "system", "content": request.system})];
        for (role, text) in &request.messages {
            messages.push(json!({"role": role.as_str(), "content": text}));
        }
        let response_format = match self.format {
            ResponseFormat::JsonSchema => json!({
                "type": "json_schema",
                "json_schema": {"name": "adjustment", "strict": true, "schema": request.schema}
            }),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
        };
        json!({
            "model": self.model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "response_format": response_format
        })
    }
}

/// Maps a transport error.
pub(crate) fn transport_error(e: &reqwest::Error) -> CallError {
    if e.is_timeout() {
        CallError::Timeout
    } else {
        CallError::Connect(e.to_string())
    }
}

/// Reads an error response: status, `Retry-After` (seconds) and the API's message
/// (`{"error": {"message": ...}}` for OpenAI and Gemini, `{"error": "..."}` for Ollama) or
/// the body.
pub(crate) async fn http_error(resp: reqwest::Response) -> CallError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(std::time::Duration::from_secs_f64);
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(500).collect());
    CallError::Http {
        status,
        message,
        retry_after,
    }
}

/// Posts `body` to `url` and returns the JSON answer.
pub(crate) async fn post_json(
    builder: reqwest::RequestBuilder,
    body: &Value,
) -> Result<Value, CallError> {
    let resp = builder
        .json(body)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    if !resp.status().is_success() {
        return Err(http_error(resp).await);
    }
    // The server answered: a body that stops early is a broken reply, not an unreachable
    // server.
    let text = resp.text().await.map_err(|e| {
        if e.is_timeout() {
            CallError::Timeout
        } else {
            CallError::Decode(format!(
                "the reply body was cut short before its end (shorter than its Content-Length, \
                 or the connection closed): {e}"
            ))
        }
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CallError::Decode(format!(
            "response body is not JSON ({e}): {}",
            excerpt(&text)
        ))
    })
}

#[async_trait]
impl ChatBackend for OpenAiBackend {
    fn provider(&self) -> &str {
        "openai-compatible"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    fn json_schema(&self) -> bool {
        self.format == ResponseFormat::JsonSchema
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatReply, CallError> {
        let mut builder = self.client.post(self.endpoint());
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let v = post_json(builder, &self.body(request))
            .await
            .map_err(|e| e.redacted(self.api_key.as_ref()))?;
        ChatReply::from_json(
            &v,
            &self.model,
            [
                "/choices/0/message/content",
                "/usage/prompt_tokens",
                "/usage/completion_tokens",
            ],
        )
        .map(|r| r.cut_when(&v, "/choices/0/finish_reason", "length"))
    }
}
