//! Chat backends and the advisor over them: prompt, call, parse, one repair request, and a
//! record of every call. Timeouts, retries with backoff and rate limits wrap the advisor as
//! layers ([`crate::layers`]); the provider factory applies them from the provider file.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use crate::advice::{Advice, AdvisorContext, CallRecord, Capabilities, LlmAdvisor, OutputMode};
use crate::error::{AdvisorError, Result};
use crate::prompt::{answer_schema, system_prompt, user_prompt};
use crate::reply::parse;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The planner.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// Lower-case name as the chat APIs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// System prompt.
    pub system: String,
    /// Conversation, oldest first.
    pub messages: Vec<(Role, String)>,
    /// JSON schema the answer must follow.
    pub schema: Value,
    /// Sampling temperature.
    pub temperature: f64,
}

/// One chat reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    /// The text.
    pub text: String,
    /// Model that answered, as the API reports it.
    pub model: String,
    /// Prompt tokens.
    pub tokens_in: Option<u64>,
    /// Reply tokens.
    pub tokens_out: Option<u64>,
}

/// The first 200 characters of `text`, quoted (for errors about a server's answer).
pub(crate) fn excerpt(text: &str) -> String {
    format!("{:?}", text.chars().take(200).collect::<String>())
}

impl ChatReply {
    /// The reply in an API's JSON answer `v`: the text at JSON pointer `text`, the model the
    /// answer names (else `model`), and the token counts at `tokens_in` and `tokens_out`. No
    /// text is an error quoting the answer.
    pub fn from_json(
        v: &Value,
        model: &str,
        [text, tokens_in, tokens_out]: [&str; 3],
    ) -> std::result::Result<Self, CallError> {
        let reply = v.pointer(text).and_then(Value::as_str).ok_or_else(|| {
            CallError::Decode(format!(
                "no {} in {}",
                text.trim_start_matches('/').replace('/', "."),
                excerpt(&v.to_string())
            ))
        })?;
        Ok(Self {
            text: reply.to_string(),
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(model)
                .to_string(),
            tokens_in: v.pointer(tokens_in).and_then(Value::as_u64),
            tokens_out: v.pointer(tokens_out).and_then(Value::as_u64),
        })
    }
}

/// A failed HTTP attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The server answered with an error status.
    Http {
        /// Status code.
        status: u16,
        /// The API's error message, or the body.
        message: String,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// No connection.
    Connect(String),
    /// No complete answer in time.
    Timeout,
    /// An answer without the API's shape.
    Decode(String),
}

impl CallError {
    /// The same error with `key` (and any `Bearer` token) removed from its messages.
    pub fn redacted(self, key: Option<&crate::secret::Secret>) -> Self {
        let clean = |m: String| match key {
            Some(k) => k.redact(&m),
            None => crate::secret::redact_bearer(&m),
        };
        match self {
            CallError::Http {
                status,
                message,
                retry_after,
            } => CallError::Http {
                status,
                message: clean(message),
                retry_after,
            },
            CallError::Connect(m) => CallError::Connect(clean(m)),
            CallError::Decode(m) => CallError::Decode(clean(m)),
            CallError::Timeout => CallError::Timeout,
        }
    }
}

/// One chat API.
#[async_trait]
pub trait ChatBackend: Send + Sync {
    /// Provider kind, e.g. `openai-compatible`.
    fn provider(&self) -> &str;
    /// Model name.
    fn model(&self) -> &str;
    /// Endpoint URL called.
    fn endpoint(&self) -> String;
    /// Whether the answer is constrained by the JSON schema.
    fn json_schema(&self) -> bool;
    /// Sends one request (no retries, no timeout: the advisor adds them).
    async fn chat(&self, request: &ChatRequest) -> std::result::Result<ChatReply, CallError>;
}

/// An advisor that asks a chat model: one attempt per request (wrap it in
/// [`crate::layers`] for a timeout and retries).
pub struct ChatAdvisor<B> {
    backend: B,
    mode: OutputMode,
    temperature: f64,
}

impl<B: ChatBackend> ChatAdvisor<B> {
    /// An advisor over `backend`.
    pub fn new(backend: B, mode: OutputMode, temperature: f64) -> Self {
        Self {
            backend,
            mode,
            temperature,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn to_error(&self, e: CallError) -> AdvisorError {
        let provider = self.backend.provider().to_string();
        let endpoint = self.backend.endpoint();
        match e {
            CallError::Http {
                status,
                message,
                retry_after,
            } => AdvisorError::Http {
                provider,
                endpoint,
                status,
                message,
                retry_after,
            },
            CallError::Connect(message) => AdvisorError::Unreachable {
                provider,
                endpoint,
                message,
            },
            // The HTTP client gave up connecting (its connect limit); the timeout layer
            // reports a reply that does not come in time.
            CallError::Timeout => AdvisorError::Unreachable {
                provider,
                endpoint,
                message: "timed out while connecting".into(),
            },
            CallError::Decode(message) => AdvisorError::Protocol {
                provider,
                endpoint,
                message,
            },
        }
    }

    /// One recorded call.
    async fn recorded(&self, request: &ChatRequest) -> (Result<ChatReply>, CallRecord) {
        let t = Instant::now();
        let reply = self
            .backend
            .chat(request)
            .await
            .map_err(|e| self.to_error(e));
        let record = CallRecord {
            provider: self.backend.provider().to_string(),
            model: reply
                .as_ref()
                .map_or(self.backend.model().to_string(), |r| r.model.clone()),
            system: request.system.clone(),
            messages: request
                .messages
                .iter()
                .map(|(r, m)| (r.as_str().to_string(), m.clone()))
                .collect(),
            reply: reply.as_ref().map_or(String::new(), |r| r.text.clone()),
            latency_s: t.elapsed().as_secs_f64(),
            tokens_in: reply.as_ref().ok().and_then(|r| r.tokens_in),
            tokens_out: reply.as_ref().ok().and_then(|r| r.tokens_out),
            attempts: 1,
            error: reply.as_ref().err().map(|e| e.to_string()),
        };
        (reply, record)
    }
}

#[async_trait]
impl<B: ChatBackend> LlmAdvisor for ChatAdvisor<B> {
    fn name(&self) -> String {
        format!("{} {}", self.backend.provider(), self.backend.model())
    }

    fn endpoint(&self) -> Option<String> {
        Some(self.backend.endpoint())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            json_schema: self.backend.json_schema(),
            network: true,
            deterministic: false,
            mode: self.mode,
        }
    }

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        let mut request = ChatRequest {
            system: system_prompt(context, self.mode),
            messages: vec![(Role::User, user_prompt(context))],
            schema: answer_schema(context, self.mode),
            temperature: self.temperature,
        };
        let mut calls = Vec::new();
        let (reply, record) = self.recorded(&request).await;
        calls.push(record);
        let first = reply?;
        let problem = match parse(&first.text, context, self.mode) {
            Ok(p) => {
                return Ok(Advice {
                    goals: p.goals,
                    actions: p.actions,
                    rationale: p.rationale,
                    calls,
                    repaired: Vec::new(),
                });
            }
            Err(problem) => problem,
        };
        calls.last_mut().expect("one call").error = Some(problem.message.clone());
        // One repair request quoting the problem.
        request.messages.push((Role::Assistant, first.text.clone()));
        request.messages.push((
            Role::User,
            format!(
                "Your reply could not be used: {problem}. Answer again with the JSON object \
                 only, following the schema, using only the objective ids of the table."
            ),
        ));
        let (reply, record) = self.recorded(&request).await;
        calls.push(record);
        let second = reply?;
        match parse(&second.text, context, self.mode) {
            Ok(p) => Ok(Advice {
                goals: p.goals,
                actions: p.actions,
                rationale: p.rationale,
                calls,
                repaired: vec![problem.cause],
            }),
            Err(second_problem) => {
                calls.last_mut().expect("two calls").error = Some(second_problem.message.clone());
                Err(AdvisorError::BadReply {
                    provider: self.backend.provider().to_string(),
                    reason: second_problem.message,
                    raw: second.text,
                    causes: vec![problem.cause, second_problem.cause],
                    calls,
                })
            }
        }
    }
}
