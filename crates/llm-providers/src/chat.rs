//! Chat backends and the advisor over them: prompt, call with timeout and retries, parse, one
//! repair request, and a record of every call.

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
    fn retryable(&self) -> bool {
        match self {
            CallError::Http { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            CallError::Connect(_) | CallError::Timeout => true,
            CallError::Decode(_) => false,
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

/// Timeouts and retries of model calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallPolicy {
    /// Per attempt.
    pub timeout: Duration,
    /// Retries after the first attempt (on 408/429/5xx, connection errors and timeouts).
    pub retries: u32,
    /// First backoff; doubled each retry, with jitter of up to half of it.
    pub backoff: Duration,
    /// Longest wait between attempts (a longer `Retry-After` is cut to it).
    pub max_backoff: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// An advisor that asks a chat model.
pub struct ChatAdvisor<B> {
    backend: B,
    policy: CallPolicy,
    mode: OutputMode,
    temperature: f64,
}

impl<B: ChatBackend> ChatAdvisor<B> {
    /// An advisor over `backend`.
    pub fn new(backend: B, policy: CallPolicy, mode: OutputMode, temperature: f64) -> Self {
        Self {
            backend,
            policy,
            mode,
            temperature,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Sends `request` with the policy's timeout and retries; returns the reply (or error) and
    /// the number of attempts.
    async fn call(&self, request: &ChatRequest) -> (Result<ChatReply>, u32) {
        let mut attempt = 0u32;
        let mut rng = tps_core::rng::SplitMix64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        );
        loop {
            attempt += 1;
            let outcome =
                match tokio::time::timeout(self.policy.timeout, self.backend.chat(request)).await {
                    Ok(r) => r,
                    Err(_) => Err(CallError::Timeout),
                };
            let err = match outcome {
                Ok(reply) => return (Ok(reply), attempt),
                Err(e) => e,
            };
            if !err.retryable() || attempt > self.policy.retries {
                return (Err(self.to_error(err)), attempt);
            }
            let base = self.policy.backoff.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
            let jittered = base * rng.uniform([1.0, 1.5]);
            let wait = match &err {
                CallError::Http {
                    retry_after: Some(r),
                    ..
                } => r.as_secs_f64().max(jittered),
                _ => jittered,
            }
            .min(self.policy.max_backoff.as_secs_f64());
            tracing::warn!(
                "{} at {}: attempt {attempt} failed ({err:?}); retrying in {wait:.1} s",
                self.backend.provider(),
                self.backend.endpoint()
            );
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }

    fn to_error(&self, e: CallError) -> AdvisorError {
        let provider = self.backend.provider().to_string();
        let endpoint = self.backend.endpoint();
        match e {
            CallError::Http {
                status, message, ..
            } => AdvisorError::Http {
                provider,
                endpoint,
                status,
                message,
            },
            CallError::Connect(message) => AdvisorError::Unreachable {
                provider,
                endpoint,
                message,
            },
            CallError::Timeout => AdvisorError::Timeout {
                provider,
                endpoint,
                seconds: self.policy.timeout.as_secs_f64(),
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
        let (reply, attempts) = self.call(request).await;
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
            attempts,
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
                });
            }
            Err(problem) => problem,
        };
        calls.last_mut().expect("one call").error = Some(problem.clone());
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
            }),
            Err(reason) => Err(AdvisorError::BadReply {
                provider: self.backend.provider().to_string(),
                reason,
                raw: second.text,
            }),
        }
    }
}
