//! Ollama's `/api/chat` through `ollama-rs`: non-streaming, `format` set to the answer's JSON
//! schema (structured output, Ollama 0.5 and later), `options.temperature`.
//!
//! `ollama-rs` reports a non-success answer by its body only; an error whose message says a
//! model was not found counts as 404 (not retried), any other as a server error (retried).

use async_trait::async_trait;
use ollama_rs::Ollama;
use ollama_rs::generation::chat::ChatMessage;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::parameters::{FormatType, JsonStructure};
use ollama_rs::models::ModelOptions;

use crate::chat::{CallError, ChatBackend, ChatReply, ChatRequest, Role};
use crate::openai::transport_error;

/// An Ollama server.
pub struct OllamaBackend {
    client: Ollama,
    base_url: String,
    model: String,
}

impl OllamaBackend {
    /// A backend for `model` at `base_url` (e.g. `http://127.0.0.1:11434`), which must be a
    /// valid URL (the provider config checks it).
    pub fn new(client: reqwest::Client, base_url: &reqwest::Url, model: &str) -> Self {
        Self {
            client: Ollama::builder()
                .url(base_url.clone())
                .reqwest_client(client)
                .build(),
            base_url: base_url.as_str().trim_end_matches('/').to_string(),
            model: model.to_string(),
        }
    }

    /// The `ollama-rs` request for `request`.
    pub fn request(&self, request: &ChatRequest) -> Result<ChatMessageRequest, CallError> {
        let mut messages = vec![ChatMessage::system(request.system.clone())];
        for (role, text) in &request.messages {
            messages.push(match role {
                Role::User => ChatMessage::user(text.clone()),
                Role::Assistant => ChatMessage::assistant(text.clone()),
            });
        }
        let schema: schemars::Schema = serde_json::from_value(request.schema.clone())
            .map_err(|e| CallError::Decode(format!("answer schema: {e}")))?;
        Ok(ChatMessageRequest::new(self.model.clone(), messages)
            .format(FormatType::StructuredJson(Box::new(
                JsonStructure::new_for_schema(schema),
            )))
            .options(ModelOptions::default().temperature(request.temperature as f32)))
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
        use ollama_rs::error::OllamaError;
        let req = self.request(request)?;
        let resp = self
            .client
            .send_chat_messages(req)
            .await
            .map_err(|e| match e {
                OllamaError::ReqwestError(e) => transport_error(&e),
                OllamaError::JsonError(e) => CallError::Decode(e.to_string()),
                OllamaError::Other(body) => {
                    let message = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_string))
                        .unwrap_or(body);
                    let status = if message.contains("not found") {
                        404
                    } else {
                        500
                    };
                    CallError::Http {
                        status,
                        message,
                        retry_after: None,
                    }
                }
                other => CallError::Decode(other.to_string()),
            })?;
        Ok(ChatReply {
            text: resp.message.content,
            model: resp.model,
            tokens_in: resp.final_data.as_ref().map(|d| d.prompt_eval_count),
            tokens_out: resp.final_data.as_ref().map(|d| d.eval_count),
        })
    }
}
