//! Ollama's `/api/chat`, spoken directly: non-streaming, `format` set to the answer's JSON
//! schema (structured output, Ollama 0.5 and later), `options.temperature`.
//!
//! The reply is read as text before it is parsed, so a body that is not JSON (a proxy's page,
//! a cut reply) is quoted in the error, and an error's status is the server's own: Ollama
//! answers 404 for a model it does not have (not retried) and 5xx when busy (retried). Its
//! error body is `{"error": "..."}`; servers in front of it may send `{"error": {"message":
//! ...}}`, which is read too.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::chat::{CallError, ChatBackend, ChatReply, ChatRequest};
use crate::openai::post_json;

/// An Ollama server.
pub struct OllamaBackend {
    client: reqwest::Client,
    base_url: String,
    model: String,
}

impl OllamaBackend {
    /// A backend for `model` at `base_url` (e.g. `http://127.0.0.1:11434`), which must be a
    /// valid URL (the provider config checks it).
    pub fn new(client: reqwest::Client, base_url: &reqwest::Url, model: &str) -> Self {
        Self {
            client,
            base_url: base_url.as_str().trim_end_matches('/').to_string(),
            model: model.to_string(),
        }
    }

    /// The JSON body of `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut messages = vec![json!({"role": "system", "content": request.system})];
        for (role, text) in &request.messages {
            messages.push(json!({"role": role.as_str(), "content": text}));
        }
        json!({
            "model": self.model,
            "messages": messages,
            "stream": false,
            "format": request.schema,
            "options": {"temperature": request.temperature, "num_predict": request.max_tokens}
        })
    }
}

#[async_trait]
impl ChatBackend for OllamaBackend {
    fn provider(&self) -> &str {
        "ollama"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn endpoint(&self) -> String {
        format!("{}/api/chat", self.base_url)
    }

    fn json_schema(&self) -> bool {
        true
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatReply, CallError> {
        let v = post_json(self.client.post(self.endpoint()), &self.body(request))
            .await
            .map_err(|e| e.redacted(None))?;
        ChatReply::from_json(
            &v,
            &self.model,
            ["/message/content", "/prompt_eval_count", "/eval_count"],
        )
        .map(|r| r.cut_when(&v, "/done_reason", "length"))
    }
}
