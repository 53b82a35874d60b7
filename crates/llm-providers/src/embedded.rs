//! The offline advisor: a small instruct model run in-process on the CPU from a GGUF file
//! (default: SmolLM2-135M-Instruct, Apache-2.0, fetched by `scripts/fetch-offline-model.sh`),
//! with no network and no key.
//!
//! A model this small gets numbers wrong, so it answers in the actions mode only and never
//! writes a number: for every OAR objective of the report the decoder asks it to choose among
//! the schema's allowed values (`tighten` / `relax` / `keep`, then for a move `small` / `medium` /
//! `large`; a kept goal's step is written without asking),
//! scoring each choice by the model's log-probability after the prompt and the answer so far
//! (by its first token when the options start differently, whole otherwise), and keeps the most
//! probable. Ids, punctuation, field names and each objective's status (restated from the
//! report just before its action, as the answer schema has it) are written by the decoder, so
//! the answer is valid JSON of the answer schema by construction; the rationale lists the
//! choices (the model writes no free text). Rust then turns the actions into goals
//! ([`crate::steps::actions_to_goals`]).
//!
//! The model runs with candle (`quantized_llama`); its tokenizer is built from the GGUF
//! metadata (byte-level BPE with SmolLM2's pre-tokenizer: single digits, then byte-level without
//! a prefix space). Deterministic: the same context gives the same answer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{D, Device, Tensor};
use candle_transformers::models::quantized_llama::{self, ModelWeights};
use tokenizers::Tokenizer;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tps_api::structure::Role;

use crate::advice::{
    Advice, AdvisorContext, CallRecord, Capabilities, Direction, LlmAdvisor, OutputMode,
};
use crate::error::{AdvisorError, Result};
use crate::prompt::{system_prompt, user_prompt, user_prompt_stable};
use crate::reply::parse;

/// A GGUF chat model with its tokenizer, loaded once.
pub struct EmbeddedModel {
    path: PathBuf,
    weights: ModelWeights,
    tokenizer: Tokenizer,
    /// `<|im_start|>` and `<|im_end|>`.
    im_start: u32,
    im_end: u32,
    /// Largest number of tokens (prompt and answer) the model takes.
    context: usize,
}

fn load_error(path: &Path, reason: impl std::fmt::Display) -> AdvisorError {
    AdvisorError::Config {
        origin: path.display().to_string(),
        field: "model".into(),
        value: String::new(),
        reason: format!("{reason} (get the offline model with scripts/fetch-offline-model.sh)"),
    }
}

impl EmbeddedModel {
    /// Loads a llama-architecture GGUF chat model with ChatML tokens (`<|im_start|>`,
    /// `<|im_end|>`); an unreadable or unsuitable file is a `Config` error naming it.
    pub fn load(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| load_error(path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| load_error(path, e))?;
        let md = &content.metadata;
        let strings = |key: &str| -> Result<Vec<String>> {
            md.get(key)
                .ok_or_else(|| load_error(path, format!("no {key} in the GGUF metadata")))?
                .to_vec()
                .map_err(|e| load_error(path, e))?
                .iter()
                .map(|v| v.to_string().cloned().map_err(|e| load_error(path, e)))
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| load_error(path, format!("merge {m:?} is not a pair")))
            })
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let special = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| load_error(path, format!("the vocabulary has no {t} token")))
        };
        let (im_start, im_end) = (special("<|im_start|>")?, special("<|im_end|>")?);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| load_error(path, e))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        tokenizer.with_decoder(Some(ByteLevel::default()));
        // candle's llama precomputes its rotary tables for MAX_SEQ_LEN positions, which may be
        // fewer than the model was trained for.
        let context = md
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(2048, |n| n as usize)
            .min(quantized_llama::MAX_SEQ_LEN);
        let weights = dequantized(content, &mut file).map_err(|e| load_error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            weights,
            tokenizer,
            im_start,
            im_end,
            context,
        })
    }

    /// Token ids of `text` (no special tokens).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| load_error(&self.path, e))
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, false).unwrap_or_default()
    }

    /// The start of [`Self::chat`]'s prompt: the system turn, then the user turn opened and
    /// `user_start` written (the tokens of a longer user turn start with these when the text
    /// that follows begins a new pre-token, as a newline does).
    fn chat_start(&self, system: &str, user_start: &str) -> Result<(Vec<u32>, usize)> {
        let mut ids = vec![self.im_start];
        ids.extend(self.encode(&format!("system\n{system}"))?);
        ids.push(self.im_end);
        ids.extend(self.encode("\n")?);
        let system_end = ids.len();
        ids.push(self.im_start);
        ids.extend(self.encode(&format!("user\n{user_start}"))?);
        Ok((ids, system_end))
    }

    /// The ChatML prompt: system and user turns, then the assistant's turn opened.
    fn chat(&self, system: &str, user: &str) -> Result<Vec<u32>> {
        let (mut ids, _) = self.chat_start(system, user)?;
        ids.push(self.im_end);
        ids.extend(self.encode("\n")?);
        ids.push(self.im_start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }
}

/// The model with its quantized weight matrices expanded to f32 (rewritten as an in-memory
/// GGUF): candle has no SIMD kernel for Q4_1, and f32 matrices go through its matrix-multiply
/// kernels, several times faster on a long prompt (a 135M-parameter model takes 0.5 GB).
fn dequantized(
    content: gguf_file::Content,
    file: &mut std::fs::File,
) -> candle_core::Result<ModelWeights> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let q = content.tensor(file, name, &Device::Cpu)?;
        let q = if q.dtype().block_size() > 1 {
            QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::F32)?
        } else {
            q
        };
        tensors.push(q);
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let list: Vec<(&str, &QTensor)> = names.iter().map(|n| n.as_str()).zip(&tensors).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &metadata, &list)?;
    buf.set_position(0);
    let expanded = gguf_file::Content::read(&mut buf)?;
    ModelWeights::from_gguf(expanded, &mut buf, &Device::Cpu)
}

/// A decoding state: the model with its attention cache after `pos` tokens, and the
/// log-probabilities of the next token.
#[derive(Clone)]
struct Session {
    weights: ModelWeights,
    pos: usize,
    next: Vec<f32>,
}

fn run_error(e: impl std::fmt::Display) -> AdvisorError {
    // candle appends a backtrace to some errors; the first line says what failed.
    let text = e.to_string();
    AdvisorError::BadReply {
        provider: "embedded".into(),
        reason: format!(
            "the model failed to run: {}",
            text.lines().next().unwrap_or_default()
        ),
        raw: String::new(),
        causes: Vec::new(),
        calls: Vec::new(),
    }
}

impl Session {
    fn feed(&mut self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let input = Tensor::new(ids, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(run_error)?;
        let logits = self
            .weights
            .forward(&input, self.pos)
            .and_then(|l| l.squeeze(0))
            .and_then(|l| candle_nn_log_softmax(&l))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(run_error)?;
        self.pos += ids.len();
        self.next = logits;
        Ok(())
    }

    /// Log-probability of `ids` following the current state, and the state after all but the
    /// last of them (the last token's probability is known before it is fed, so a one-token
    /// option costs no pass of the model).
    fn score(&self, ids: &[u32]) -> Result<(f64, Option<Session>)> {
        let (last, rest) = ids.split_last().expect("an option has tokens");
        if rest.is_empty() {
            return Ok((f64::from(self.next[*last as usize]), None));
        }
        let mut s = self.clone();
        let mut total = 0.0;
        for &id in rest {
            total += f64::from(s.next[id as usize]);
            s.feed(&[id])?;
        }
        total += f64::from(s.next[*last as usize]);
        Ok((total, Some(s)))
    }
}

/// The model's state after the prompts of the last advice, kept at the positions where a
/// later prompt of the same plan may differ: the end of the system turn and the end of the
/// prompt's stable part (examples and history, [`user_prompt_stable`]). The next advice starts
/// from the latest of them that its own prompt begins with, and feeds only the rest.
#[derive(Default)]
struct PromptCache {
    /// Tokens of the last prompt.
    ids: Vec<u32>,
    /// States after `ids[..state.pos]`, by increasing position.
    states: Vec<Session>,
}

/// Length of the common start of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `log_softmax` over the last dimension.
fn candle_nn_log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// The offline advisor over an [`EmbeddedModel`].
pub struct EmbeddedAdvisor {
    model: EmbeddedModel,
    name: String,
    cache: Mutex<PromptCache>,
}

impl EmbeddedAdvisor {
    /// The advisor for the model at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let model = EmbeddedModel::load(path)?;
        let name = format!(
            "embedded:{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        Ok(Self {
            model,
            name,
            cache: Mutex::new(PromptCache::default()),
        })
    }

    /// The model's state after `prompt`, starting from the cached state of an earlier prompt
    /// that this one begins with; also the number of prompt tokens that were not fed again.
    /// The cache then holds this prompt's states at the end of its system turn and of its
    /// stable part (`stable`, the start of the user turn).
    fn feed_prompt(&self, system: &str, stable: &str, prompt: &[u32]) -> Result<(Session, usize)> {
        let m = &self.model;
        let (start, system_end) = m.chat_start(system, stable)?;
        let marks: Vec<usize> = [system_end, start.len()]
            .into_iter()
            .filter(|&p| prompt.len() >= p && prompt[..p] == start[..p])
            .collect();
        let mut cache = std::mem::take(&mut *self.cache.lock().expect("the prompt cache"));
        let shared = common_prefix(&cache.ids, prompt);
        cache.states.retain(|st| st.pos <= shared);
        let mut s = cache.states.last().cloned().unwrap_or_else(|| Session {
            weights: m.weights.clone(),
            pos: 0,
            next: Vec::new(),
        });
        let reused = s.pos;
        for &mark in &marks {
            if mark > s.pos {
                s.feed(&prompt[s.pos..mark])?;
                cache.states.push(s.clone());
            }
        }
        s.feed(&prompt[s.pos..])?;
        cache.states.retain(|st| marks.contains(&st.pos));
        cache.ids = prompt.to_vec();
        *self.cache.lock().expect("the prompt cache") = cache;
        Ok((s, reused))
    }

    /// The advice for `context`, computed on this thread.
    pub fn decide(&self, context: &AdvisorContext) -> Result<Advice> {
        let t = Instant::now();
        let m = &self.model;
        let system = system_prompt(context, OutputMode::Actions);
        let user = user_prompt(context, OutputMode::Actions);
        let prompt = m.chat(&system, &user)?;
        // Room for the answer: about 25 tokens per objective and the rationale.
        let oars: Vec<_> = context
            .current
            .objectives
            .iter()
            .filter(|o| o.role == Role::Oar)
            .collect();
        let budget = prompt.len() + 25 * oars.len() + 16;
        if budget > m.context {
            return Err(AdvisorError::BadReply {
                provider: self.name.clone(),
                reason: format!(
                    "the prompt takes {} tokens; with the answer that exceeds the model's context \
                     of {} (fewer few-shot examples or a shorter history would fit)",
                    prompt.len(),
                    m.context
                ),
                raw: String::new(),
                causes: Vec::new(),
                calls: Vec::new(),
            });
        }
        let (mut s, reused) = self.feed_prompt(
            &system,
            &user_prompt_stable(context, OutputMode::Actions),
            &prompt,
        )?;
        tracing::debug!(
            tokens = prompt.len(),
            reused,
            seconds = t.elapsed().as_secs_f64(),
            "prompt read"
        );
        tracing::trace!(%system, %user, "prompt");
        let mut text = String::new();
        // Tokens written but not yet fed: the decoder's fixed text and a chosen option go
        // through the model together, in one pass, when the next choice needs its state.
        let mut pending: Vec<u32> = Vec::new();
        let emit = |pending: &mut Vec<u32>, piece: &str, text: &mut String| -> Result<()> {
            pending.extend(m.encode(piece)?);
            text.push_str(piece);
            Ok(())
        };
        let choose = |s: &mut Session,
                      pending: &mut Vec<u32>,
                      options: &[&str],
                      text: &mut String|
         -> Result<usize> {
            s.feed(pending)?;
            pending.clear();
            let encoded: Vec<Vec<u32>> =
                options.iter().map(|o| m.encode(o)).collect::<Result<_>>()?;
            // Options that start with different tokens are told apart by their first token,
            // whose log-probability the state already holds (a word's later tokens follow its
            // start with probability near 1); otherwise each is scored whole.
            let first_apart = encoded
                .iter()
                .enumerate()
                .all(|(k, a)| encoded[..k].iter().all(|b| b[0] != a[0]));
            let mut best: Option<(f64, usize, Option<Session>)> = None;
            for (k, ids) in encoded.iter().enumerate() {
                let (lp, after) = if first_apart {
                    (f64::from(s.next[ids[0] as usize]), None)
                } else {
                    s.score(ids)?
                };
                tracing::debug!(option = options[k], logp = lp, "option scored");
                if best.as_ref().is_none_or(|(b, ..)| lp > *b) {
                    best = Some((lp, k, after));
                }
            }
            let (_, k, after) = best.expect("at least one option");
            match after {
                // The state has read all but the last token of the option.
                Some(after) => {
                    *s = after;
                    pending.push(*encoded[k].last().expect("an option has tokens"));
                }
                None => pending.extend(&encoded[k]),
            }
            text.push_str(options[k]);
            Ok(k)
        };
        // The answer's form as the prompt asks for it: one entry per organ objective, keyed by
        // its id (targets and rings are not the model's to move).
        let mut chosen: Vec<&str> = Vec::with_capacity(oars.len());
        emit(&mut pending, "{\"actions\": {", &mut text)?;
        for (n, o) in oars.iter().enumerate() {
            let sep = if n == 0 { "" } else { ", " };
            emit(
                &mut pending,
                &format!(
                    "{sep}\"{}\": {{\"status\": \"{}\", \"action\": \"",
                    o.id,
                    o.status.word()
                ),
                &mut text,
            )?;
            const WAYS: [&str; 3] = ["tighten", "relax", "keep"];
            let way = choose(&mut s, &mut pending, &WAYS, &mut text)?;
            chosen.push(WAYS[way]);
            if WAYS[way] == "keep" {
                // A kept goal has no step: the schema's first value is written without asking
                // the model (a pass saved for most objectives of a report).
                emit(&mut pending, "\", \"step\": \"small\"}", &mut text)?;
            } else {
                emit(&mut pending, "\", \"step\": \"", &mut text)?;
                choose(
                    &mut s,
                    &mut pending,
                    &["small", "medium", "large"],
                    &mut text,
                )?;
                emit(&mut pending, "\"}", &mut text)?;
            }
        }
        // The rationale says what was chosen; the model writes no free text (48 tokens of it
        // took a third of the advice's time and carried nothing the actions do not).
        let mut moved: Vec<String> = Vec::new();
        for way in ["tighten", "relax"] {
            let ids: Vec<&str> = oars
                .iter()
                .zip(&chosen)
                .filter(|(_, c)| **c == way)
                .map(|(o, _)| o.id.as_str())
                .collect();
            if !ids.is_empty() {
                moved.push(format!("{way} {}", ids.join(", ")));
            }
        }
        let rationale_text = if moved.is_empty() {
            "keep every organ objective".to_string()
        } else {
            format!("{}; keep the other organ objectives", moved.join("; "))
        };
        text.push_str("}, \"rationale\": \"");
        text.push_str(&rationale_text);
        text.push_str("\"}");
        let latency_s = t.elapsed().as_secs_f64();
        let record = CallRecord {
            provider: "embedded".into(),
            model: self.name.clone(),
            served_model: None,
            system: system.clone(),
            messages: vec![("user".into(), user.clone())],
            reply: text.clone(),
            latency_s,
            tokens_in: Some(prompt.len() as u64),
            tokens_cached: Some(reused as u64),
            tokens_out: Some((s.pos - prompt.len() + pending.len()) as u64),
            attempts: 1,
            error: None,
        };
        // The answer is built to the schema; parsing it is the same check every reply gets.
        let parsed = parse(&text, context, OutputMode::Actions).map_err(|problem| {
            AdvisorError::BadReply {
                provider: self.name.clone(),
                reason: problem.message,
                raw: text.clone(),
                causes: vec![problem.cause],
                calls: vec![record.clone()],
            }
        })?;
        Ok(Advice {
            goals: parsed.goals,
            actions: parsed
                .actions
                .into_iter()
                .filter(|a| a.action != Direction::Keep)
                .collect(),
            rationale: parsed.rationale,
            calls: vec![record],
            repaired: Vec::new(),
        })
    }
}

#[async_trait]
impl LlmAdvisor for EmbeddedAdvisor {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            json_schema: true,
            network: false,
            deterministic: true,
            mode: OutputMode::Actions,
        }
    }

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        self.decide(context)
    }
}
