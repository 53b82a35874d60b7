//! Provider files (`configs/providers/*.toml`) and the factory that turns one into an advisor.
//!
//! ```toml
//! kind = "openai-compatible"      # rule-based | openai-compatible | gemini | ollama | embedded
//! model = "qwen-max"
//! endpoint = "https://dashscope.aliyuncs.com/compatible-mode/v1"
//! api-key-env = "DASHSCOPE_API_KEY"   # the variable's name, never the key
//! temperature = 0.2
//! timeout-s = 120                 # limit on one attempt (an advice and its repair request)
//! retries = 3                     # on temporary errors: 408, 429, 5xx, no connection, timeout
//! backoff-s = 0.5                 # first wait, doubled per retry, with jitter
//! seed = 0                        # of the jitter: a rerun waits exactly as before
//! requests-per-minute = 30        # optional rate limit
//! output-mode = "goals"           # goals | actions
//! response-format = "json-schema" # openai-compatible only: json-schema | json-object
//! rationale-max-chars = 600       # longest rationale the answer schema allows (maxLength)
//! schema-max-length = true        # false where a server refuses maxLength (OpenAI strict mode)
//! max-tokens = 1200               # reply token limit; default sized from the answer schema
//! ```
//!
//! The timeout, retry and rate-limit keys apply to any kind ([`crate::layers`]); network kinds
//! default to a 120 s timeout and 3 retries, in-process kinds (rule-based, embedded) to
//! neither.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::advice::{LlmAdvisor, OutputMode};
use crate::chat::ChatAdvisor;
use crate::error::{AdvisorError, Result};
use crate::gemini::GeminiBackend;
use crate::layers::{self, CallPolicy};
use crate::ollama::OllamaBackend;
use crate::openai::{OpenAiBackend, ResponseFormat};
use crate::prompt::AnswerLimits;
use crate::rule_based::RuleBasedAdvisor;
use crate::secret::Secret;

/// Backend kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// [`RuleBasedAdvisor`].
    RuleBased,
    /// [`OpenAiBackend`].
    OpenaiCompatible,
    /// [`GeminiBackend`].
    Gemini,
    /// [`OllamaBackend`].
    Ollama,
    /// The offline model run in-process (`model` is the GGUF file, relative paths from the
    /// working directory); needs the `embedded` feature.
    Embedded,
}

const KINDS: &str = "rule-based, openai-compatible, gemini, ollama, embedded";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Wire {
    kind: String,
    model: Option<String>,
    endpoint: Option<String>,
    api_key_env: Option<String>,
    temperature: Option<f64>,
    timeout_s: Option<f64>,
    retries: Option<u32>,
    backoff_s: Option<f64>,
    seed: Option<u64>,
    requests_per_minute: Option<f64>,
    output_mode: Option<OutputMode>,
    response_format: Option<String>,
    rationale_max_chars: Option<usize>,
    schema_max_length: Option<bool>,
    max_tokens: Option<u32>,
}

/// A checked provider file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// Where it was read from.
    pub origin: PathBuf,
    /// Backend kind.
    pub kind: Kind,
    /// Model name (empty for the rule-based physicist).
    pub model: String,
    /// Base URL.
    pub endpoint: Option<reqwest::Url>,
    /// Name of the environment variable with the API key.
    pub api_key_env: Option<String>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Timeout, retries and rate limit ([`crate::layers`]).
    pub policy: CallPolicy,
    /// Output mode.
    pub output_mode: OutputMode,
    /// OpenAI-compatible response format.
    pub response_format: ResponseFormat,
    /// Bounds of the answer schema and the reply token limit.
    pub limits: AnswerLimits,
}

impl ProviderConfig {
    /// Reads and checks a provider file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| AdvisorError::Config {
            origin: path.display().to_string(),
            field: "(file)".into(),
            value: String::new(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks provider TOML that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let bad = |field: &str, value: String, reason: &str| AdvisorError::Config {
            origin: origin.clone(),
            field: field.into(),
            value,
            reason: reason.into(),
        };
        // A key written into the file is refused before the TOML parser, whose messages quote
        // the whole line.
        for (n, line) in text.lines().enumerate() {
            let Some((name, _)) = line.split_once('=') else {
                continue;
            };
            let name = name.trim().trim_matches('"').to_ascii_lowercase();
            let keyish = [
                "api-key", "api_key", "apikey", "key", "token", "secret", "password",
            ];
            if keyish.contains(&name.as_str()) {
                return Err(bad(
                    &format!("{name} (line {})", n + 1),
                    "[not shown]".into(),
                    "a key never goes in a provider file: export it in an environment variable \
                     and name the variable with api-key-env",
                ));
            }
        }
        let w: Wire = toml::from_str(text).map_err(|e| {
            bad(
                "(toml)",
                String::new(),
                e.to_string().replace('\n', " ").trim(),
            )
        })?;
        let kind = match w.kind.as_str() {
            "rule-based" => Kind::RuleBased,
            "openai-compatible" => Kind::OpenaiCompatible,
            "gemini" => Kind::Gemini,
            "ollama" => Kind::Ollama,
            "embedded" => Kind::Embedded,
            other => {
                return Err(bad(
                    "kind",
                    format!("{other:?}"),
                    &format!("unknown provider kind (known: {KINDS})"),
                ));
            }
        };
        let needs_model = kind != Kind::RuleBased;
        let model = w.model.unwrap_or_default();
        if needs_model && model.trim().is_empty() {
            return Err(bad("model", "(missing)".into(), "name the model"));
        }
        let endpoint = match (&w.endpoint, kind) {
            (_, Kind::RuleBased | Kind::Embedded) => None,
            (None, Kind::Gemini) => Some("https://generativelanguage.googleapis.com".to_string()),
            (None, Kind::Ollama) => Some("http://127.0.0.1:11434".to_string()),
            (None, _) => {
                return Err(bad(
                    "endpoint",
                    "(missing)".into(),
                    "give the base URL, e.g. https://api.openai.com/v1",
                ));
            }
            (Some(e), _) => Some(e.clone()),
        }
        .map(|e| {
            reqwest::Url::parse(&e)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| bad("endpoint", format!("{e:?}"), "not an http(s) URL"))
        })
        .transpose()?;
        let temperature = w.temperature.unwrap_or(0.2);
        if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
            return Err(bad(
                "temperature",
                temperature.to_string(),
                "must be between 0 and 2",
            ));
        }
        let network = !matches!(kind, Kind::RuleBased | Kind::Embedded);
        let timeout_s = w.timeout_s.or(network.then_some(120.0));
        if let Some(t) = timeout_s {
            if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
                return Err(bad(
                    "timeout-s",
                    t.to_string(),
                    "must be positive seconds (at most 3600)",
                ));
            }
        }
        let retries = w.retries.unwrap_or(if network { 3 } else { 0 });
        if retries > 10 {
            return Err(bad("retries", retries.to_string(), "at most 10"));
        }
        let backoff_s = w.backoff_s.unwrap_or(0.5);
        if !(backoff_s.is_finite() && (0.0..=60.0).contains(&backoff_s)) {
            return Err(bad(
                "backoff-s",
                backoff_s.to_string(),
                "must be 0 to 60 seconds",
            ));
        }
        if let Some(r) = w.requests_per_minute {
            if !(r.is_finite() && r > 0.0 && r <= 10_000.0) {
                return Err(bad(
                    "requests-per-minute",
                    r.to_string(),
                    "must be a positive rate, at most 10000",
                ));
            }
        }
        let response_format = match w.response_format.as_deref() {
            None | Some("json-schema") => ResponseFormat::JsonSchema,
            Some("json-object") => ResponseFormat::JsonObject,
            Some(other) => {
                return Err(bad(
                    "response-format",
                    format!("{other:?}"),
                    "json-schema or json-object",
                ));
            }
        };
        let defaults = AnswerLimits::default();
        let rationale_max_chars = w
            .rationale_max_chars
            .unwrap_or(defaults.rationale_max_chars);
        if !(50..=4000).contains(&rationale_max_chars) {
            return Err(bad(
                "rationale-max-chars",
                rationale_max_chars.to_string(),
                "from 50 to 4000 characters",
            ));
        }
        if let Some(t) = w.max_tokens
            && !(16..=32_768).contains(&t)
        {
            return Err(bad(
                "max-tokens",
                t.to_string(),
                "from 16 to 32768 tokens (leave it out to size it from the answer schema)",
            ));
        }
        let limits = AnswerLimits {
            rationale_max_chars,
            schema_max_length: w.schema_max_length.unwrap_or(defaults.schema_max_length),
            max_tokens: w.max_tokens,
        };
        if let Some(var) = &w.api_key_env {
            let name_like = var
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_like {
                // It may be the key itself: never echoed.
                return Err(bad(
                    "api-key-env",
                    "[not shown]".into(),
                    "must be the name of an environment variable (letters, digits and _, e.g. \
                     OPENAI_API_KEY), not the key",
                ));
            }
        }
        Ok(Self {
            origin: path.to_path_buf(),
            kind,
            model,
            endpoint,
            api_key_env: w.api_key_env,
            temperature,
            policy: CallPolicy {
                timeout: timeout_s.map(Duration::from_secs_f64),
                retries,
                backoff: Duration::from_secs_f64(backoff_s),
                max_backoff: Duration::from_secs(30),
                seed: w.seed.unwrap_or(0),
                requests_per_minute: w.requests_per_minute,
            },
            output_mode: w.output_mode.unwrap_or(OutputMode::Goals),
            response_format,
            limits,
        })
    }

    /// The API key from the named environment variable.
    fn api_key(&self) -> Result<Option<Secret>> {
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Ok(Some(Secret::from(k))),
                _ => Err(AdvisorError::MissingKey {
                    origin: self.origin.display().to_string(),
                    var: var.clone(),
                }),
            },
        }
    }
}

/// Why the advisor of `config` cannot be used from here, if it cannot: it cannot be built (a
/// key missing from its environment variable, a feature this build lacks), or no server
/// accepts a TCP connection at its endpoint within `timeout`. A study reports such an arm as
/// skipped with this reason instead of planning with it.
pub fn unavailable(config: &ProviderConfig, timeout: Duration) -> Option<String> {
    if let Err(e) = build(config) {
        return Some(e.to_string());
    }
    if matches!(config.kind, Kind::RuleBased | Kind::Embedded) {
        return None;
    }
    let url = config.endpoint.as_ref()?;
    let host = url.host_str().unwrap_or("localhost");
    let port = url.port_or_known_default().unwrap_or(80);
    use std::net::ToSocketAddrs;
    let reachable = (host, port)
        .to_socket_addrs()
        .into_iter()
        .flatten()
        .any(|a| std::net::TcpStream::connect_timeout(&a, timeout).is_ok());
    (!reachable).then(|| format!("no server answers at {url} ({})", config.origin.display()))
}

/// The advisor a provider file describes, wrapped in the layers it asks for. Fails on a
/// missing API key variable; an unreachable endpoint shows at the first call.
pub fn build(config: &ProviderConfig) -> Result<Box<dyn LlmAdvisor>> {
    let policy = &config.policy;
    if config.kind == Kind::RuleBased {
        return Ok(layers::apply(RuleBasedAdvisor, policy));
    }
    if config.kind == Kind::Embedded {
        return build_embedded(config);
    }
    let key = config.api_key()?;
    let connect = policy
        .timeout
        .unwrap_or(Duration::from_secs(10))
        .min(Duration::from_secs(10));
    let client = reqwest::Client::builder()
        .connect_timeout(connect)
        .build()
        .map_err(|e| AdvisorError::Config {
            origin: config.origin.display().to_string(),
            field: "(http client)".into(),
            value: String::new(),
            reason: e.to_string(),
        })?;
    let endpoint = config.endpoint.as_ref().expect("checked at parse");
    let (mode, t) = (config.output_mode, config.temperature);
    Ok(match config.kind {
        Kind::OpenaiCompatible => layers::apply(
            ChatAdvisor::new(
                OpenAiBackend::new(
                    client,
                    endpoint.as_str(),
                    &config.model,
                    key,
                    config.response_format,
                ),
                mode,
                t,
            )
            .with_limits(config.limits),
            policy,
        ),
        Kind::Gemini => layers::apply(
            ChatAdvisor::new(
                GeminiBackend::new(client, endpoint.as_str(), &config.model, key),
                mode,
                t,
            )
            .with_limits(config.limits),
            policy,
        ),
        Kind::Ollama => layers::apply(
            ChatAdvisor::new(OllamaBackend::new(client, endpoint, &config.model), mode, t)
                .with_limits(config.limits),
            policy,
        ),
        Kind::RuleBased | Kind::Embedded => unreachable!("handled above"),
    })
}

#[cfg(feature = "embedded")]
fn build_embedded(config: &ProviderConfig) -> Result<Box<dyn LlmAdvisor>> {
    if config.output_mode != OutputMode::Actions {
        return Err(AdvisorError::Config {
            origin: config.origin.display().to_string(),
            field: "output-mode".into(),
            value: "goals".into(),
            reason: "the embedded model answers in the actions mode only (it writes no numbers)"
                .into(),
        });
    }
    Ok(layers::apply(
        crate::embedded::EmbeddedAdvisor::load(std::path::Path::new(&config.model))?,
        &config.policy,
    ))
}

#[cfg(not(feature = "embedded"))]
fn build_embedded(config: &ProviderConfig) -> Result<Box<dyn LlmAdvisor>> {
    Err(AdvisorError::Config {
        origin: config.origin.display().to_string(),
        field: "kind".into(),
        value: "\"embedded\"".into(),
        reason: "this build has no embedded model: build with `--features embedded` (cargo \
                 build --release --features llm-providers/embedded)"
            .into(),
    })
}

#[cfg(test)]
mod availability_tests {
    use super::*;

    fn local(port: u16) -> ProviderConfig {
        let text = format!(
            "kind = \"openai-compatible\"\nmodel = \"m\"\nendpoint = \"http://127.0.0.1:{port}/v1\"\n"
        );
        ProviderConfig::parse(&text, Path::new("local.toml")).unwrap()
    }

    #[test]
    fn a_server_that_accepts_connections_is_available_and_a_closed_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(unavailable(&local(port), Duration::from_secs(2)), None);
        drop(listener);
        let why = unavailable(&local(port), Duration::from_secs(2)).unwrap();
        assert!(
            why.contains("no server answers") && why.contains("local.toml"),
            "{why}"
        );
        let rule = ProviderConfig::parse("kind = \"rule-based\"\n", Path::new("r.toml")).unwrap();
        assert_eq!(unavailable(&rule, Duration::from_secs(2)), None);
    }
}
