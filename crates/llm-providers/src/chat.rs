//! Chat backends and the advisor over them: prompt, call, parse, one repair request, and a
//! record of every call. Timeouts, retries with backoff and rate limits wrap the advisor as
//! layers ([`crate::layers`]); the provider factory applies them from the provider file.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use crate::advice::{Advice, AdvisorContext, CallRecord, Capabilities, LlmAdvisor, OutputMode};
use crate::error::{AdvisorError, Result};
use crate::prompt::{
    AnswerLimits, answer_max_tokens_with, answer_schema_with, system_prompt, user_prompt,
};
use crate::reply::{ReplyCause, ReplyProblem, parse};

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
    /// Most tokens the reply may have (`max_tokens`, `num_predict`, `maxOutputTokens`).
    pub max_tokens: u32,
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
    /// Whether the server stopped the reply at the token limit (`finish_reason: "length"`,
    /// Ollama's `done_reason: "length"`, Gemini's `MAX_TOKENS`).
    pub truncated: bool,
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
            truncated: false,
        })
    }

    /// The same reply, marked cut at the token limit when the string at JSON pointer `finish`
    /// of the answer `v` is `length_word`.
    pub fn cut_when(mut self, v: &Value, finish: &str, length_word: &str) -> Self {
        self.truncated = v.pointer(finish).and_then(Value::as_str) == Some(length_word);
        self
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
    limits: AnswerLimits,
}

impl<B: ChatBackend> ChatAdvisor<B> {
    /// An advisor over `backend`, with the default answer limits.
    pub fn new(backend: B, mode: OutputMode, temperature: f64) -> Self {
        Self {
            backend,
            mode,
            temperature,
            limits: AnswerLimits::default(),
        }
    }

    /// The same advisor with other answer limits.
    pub fn with_limits(mut self, limits: AnswerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The first request of an advice for `context`.
    fn request(&self, context: &AdvisorContext) -> ChatRequest {
        ChatRequest {
            system: system_prompt(context, self.mode),
            messages: vec![(Role::User, user_prompt(context, self.mode))],
            schema: answer_schema_with(context, self.mode, &self.limits),
            temperature: self.temperature,
            max_tokens: answer_max_tokens_with(context, &self.limits),
        }
    }

    /// The record of `request` before any reply: what a call that never answers leaves.
    fn record_of(&self, request: &ChatRequest) -> CallRecord {
        CallRecord {
            provider: self.backend.provider().to_string(),
            model: self.backend.model().to_string(),
            served_model: None,
            system: request.system.clone(),
            messages: request
                .messages
                .iter()
                .map(|(r, m)| (r.as_str().to_string(), m.clone()))
                .collect(),
            reply: String::new(),
            latency_s: 0.0,
            tokens_in: None,
            tokens_cached: None,
            tokens_out: None,
            attempts: 1,
            error: None,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The error of a failed call (its record is attached by the caller).
    fn to_error(&self, e: CallError) -> AdvisorError {
        let calls = Box::default();
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
                calls,
            },
            CallError::Connect(message) => AdvisorError::Unreachable {
                provider,
                endpoint,
                message,
                calls,
            },
            // The HTTP client gave up connecting (its connect limit); the timeout layer
            // reports a reply that does not come in time.
            CallError::Timeout => AdvisorError::Unreachable {
                provider,
                endpoint,
                message: "timed out while connecting".into(),
                calls,
            },
            CallError::Decode(message) => AdvisorError::Protocol {
                provider,
                endpoint,
                message,
                calls,
            },
        }
    }

    /// One call, recorded in `calls`: the reply, or the error carrying every call so far.
    async fn recorded(
        &self,
        request: &ChatRequest,
        calls: &mut Vec<CallRecord>,
    ) -> Result<ChatReply> {
        let t = Instant::now();
        let reply = self.backend.chat(request).await;
        let mut record = self.record_of(request);
        record.latency_s = t.elapsed().as_secs_f64();
        match reply {
            Ok(r) => {
                record.served_model = (r.model != record.model).then(|| r.model.clone());
                record.reply = r.text.clone();
                record.tokens_in = r.tokens_in;
                record.tokens_out = r.tokens_out;
                calls.push(record);
                Ok(r)
            }
            Err(e) => {
                let e = self.to_error(e);
                record.error = Some(e.to_string());
                calls.push(record);
                Err(e.with_earlier_calls(std::mem::take(calls)))
            }
        }
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

    fn request_record(&self, context: &AdvisorContext) -> Option<CallRecord> {
        Some(self.record_of(&self.request(context)))
    }

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        let mut request = self.request(context);
        let mut calls = Vec::new();
        let first = self.recorded(&request, &mut calls).await?;
        let problem = match read(&first, context, self.mode, request.max_tokens) {
            Ok(p) => return Ok(p.into_advice(calls, Vec::new())),
            Err(problem) => problem,
        };
        calls.last_mut().expect("one call").error = Some(problem.message.clone());
        if first.truncated {
            // Asking again with the cut text in the conversation would make the request
            // longer and the answer as long: the same prompt, asking for less.
            let cap = (self.limits.rationale_max_chars / 3).max(80);
            request.messages[0].1 += &format!(
                "\n\nYour previous answer was cut off at the limit of {} tokens. Answer again \
                 with the JSON object only: a rationale of at most {cap} characters, and list \
                 only the objectives whose goal changes.",
                request.max_tokens
            );
        } else {
            // One repair request quoting the problem.
            request.messages.push((Role::Assistant, first.text.clone()));
            request.messages.push((
                Role::User,
                format!(
                    "Your reply could not be used: {problem}. Answer again with the JSON object \
                     only, following the schema, using only the objective ids of the table."
                ),
            ));
        }
        let second = self.recorded(&request, &mut calls).await?;
        let second_problem = match read(&second, context, self.mode, request.max_tokens) {
            Ok(p) => return Ok(p.into_advice(calls, vec![problem.cause])),
            Err(p) => p,
        };
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

/// A reply read: the adjustment it gives, or why it cannot be used (cut at the token limit of
/// `max_tokens`, or refused by the reader).
fn read(
    reply: &ChatReply,
    context: &AdvisorContext,
    mode: OutputMode,
    max_tokens: u32,
) -> std::result::Result<crate::reply::Parsed, ReplyProblem> {
    if reply.truncated {
        return Err(ReplyProblem {
            cause: ReplyCause::Truncated,
            message: format!(
                "the reply was cut off at the token limit ({max_tokens} tokens) before its end"
            ),
        });
    }
    parse(&reply.text, context, mode)
}
