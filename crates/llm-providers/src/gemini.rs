//! Google Gemini `generateContent` (`POST {base}/v1beta/models/{model}:generateContent`, key
//! in the `x-goog-api-key` header), JSON output with `responseMimeType` and a `responseSchema`
//! in the API's OpenAPI subset (upper-case type names, no `additionalProperties`, the order of
//! an object's properties as `propertyOrdering`).

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::chat::{CallError, ChatBackend, ChatReply, ChatRequest, Role};
use crate::openai::post_json;
use crate::secret::Secret;

/// A Gemini endpoint.
pub struct GeminiBackend {
    client: reqwest::Client,
    base_url: String,
    model: String,
    api_key: Option<Secret>,
}

/// The answer schema in Gemini's dialect.
pub fn gemini_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.as_str() {
                    "additionalProperties" => {}
                    "type" => {
                        out.insert(
                            k.clone(),
                            Value::String(v.as_str().unwrap_or_default().to_uppercase()),
                        );
                    }
                    "properties" => {
                        // Gemini writes an object's properties in alphabetical order unless
                        // told otherwise; the answer's order matters (the actions before the
                        // rationale, the status before the action).
                        if let Value::Object(props) = v {
                            out.insert(
                                "propertyOrdering".into(),
                                props.keys().cloned().map(Value::String).collect(),
                            );
                        }
                        out.insert(k.clone(), gemini_schema(v));
                    }
                    _ => {
                        out.insert(k.clone(), gemini_schema(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(gemini_schema).collect()),
        other => other.clone(),
    }
}

impl GeminiBackend {
    /// A backend for `model` at `base_url` (e.g. `https://generativelanguage.googleapis.com`).
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        model: &str,
        api_key: Option<Secret>,
    ) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
        }
    }

    /// The JSON body of `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let contents: Vec<Value> = request
            .messages
            .iter()
            .map(|(role, text)| {
                json!({
                    "role": if *role == Role::User { "user" } else { "model" },
                    "parts": [{"text": text}]
                })
            })
            .collect();
        json!({
            "systemInstruction": {"parts": [{"text": request.system}]},
            "contents": contents,
            "generationConfig": {
                "temperature": request.temperature,
                "maxOutputTokens": request.max_tokens,
                "responseMimeType": "application/json",
                "responseSchema": gemini_schema(&request.schema)
            }
        })
    }
}

#[async_trait]
impl ChatBackend for GeminiBackend {
    fn provider(&self) -> &str {
        "gemini"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn endpoint(&self) -> String {
        format!(
            "{}/v1beta/models/{}:generateContent",
            self.base_url, self.model
        )
    }

    fn json_schema(&self) -> bool {
        true
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatReply, CallError> {
        let mut builder = self.client.post(self.endpoint());
        if let Some(key) = &self.api_key {
            builder = builder.header("x-goog-api-key", key.expose());
        }
        let v = post_json(builder, &self.body(request))
            .await
            .map_err(|e| e.redacted(self.api_key.as_ref()))?;
        let parts = v
            .pointer("/candidates/0/content/parts")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                let reason = v
                    .pointer("/promptFeedback/blockReason")
                    .or_else(|| v.pointer("/candidates/0/finishReason"))
                    .map_or("no candidate".to_string(), |r| r.to_string());
                CallError::Decode(format!("no candidates[0].content.parts ({reason})"))
            })?;
        let text: String = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        Ok(ChatReply {
            text,
            model: v
                .get("modelVersion")
                .and_then(Value::as_str)
                .unwrap_or(&self.model)
                .to_string(),
            tokens_in: v
                .pointer("/usageMetadata/promptTokenCount")
                .and_then(Value::as_u64),
            tokens_out: v
                .pointer("/usageMetadata/candidatesTokenCount")
                .and_then(Value::as_u64),
            truncated: false,
        }
        .cut_when(&v, "/candidates/0/finishReason", "MAX_TOKENS"))
    }
}
