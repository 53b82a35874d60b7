//! The offline advisor: a small instruct model run in-process on the CPU from a GGUF file
//! (default: SmolLM2-135M-Instruct, Apache-2.0, fetched by `scripts/fetch-offline-model.sh`),
//! with no network and no key.
//!
//! A model this small gets numbers wrong, so it answers in the actions mode only and never
//! writes a number: for every OAR objective of the report the decoder asks it to choose among
//! the schema's allowed values (`tighten` / `relax` / `keep`, then for a move `small` /
//! `medium` / `large`; a kept goal's step is written without asking) and keeps the option the
//! model finds most probable after the prompt and the answer so far. The options start with
//! different letters, so their first tokens tell them apart. Ids, punctuation, field names and
//! each objective's status (restated from the report just before its action, as the answer
//! schema has it) are written by the decoder, so the answer is valid JSON of the answer schema
//! by construction; the rationale lists the choices (the model writes no free text). Rust then
//! turns the actions into goals ([`crate::steps::actions_to_goals`]).
//!
//! The choices are found by checking a draft (the first few-shot example's moves): the whole
//! drafted answer goes through the model in one pass, and only where the model prefers another
//! option is the pass redone from there ([`EmbeddedAdvisor::decide_drafted`]); the answer is the
//! one a choice-by-choice decoder writes, in one to three passes instead of one per choice.
//!
//! The model runs on candle tensors with our own forward pass ([`crate::llama`], which returns
//! every position's state); its tokenizer is built from the GGUF metadata (byte-level BPE with
//! SmolLM2's pre-tokenizer: single digits, then byte-level without a prefix space).
//! Deterministic: the same context gives the same answer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use candle_core::quantized::gguf_file;
use tokenizers::Tokenizer;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tps_api::report::ObjectiveReport;

use crate::advice::{
    Advice, AdvisorContext, CallRecord, Capabilities, Direction, LlmAdvisor, OutputMode, StepClass,
};
use crate::error::{AdvisorError, Result};
use crate::llama::{KvCache, Llama};
use crate::prompt::{answer_order, example_moves, system_prompt, user_prompt, user_prompt_stable};
use crate::reply::parse;

/// A GGUF chat model with its tokenizer, loaded once.
pub struct EmbeddedModel {
    path: PathBuf,
    weights: Llama,
    tokenizer: Tokenizer,
    /// `<|im_start|>` and `<|im_end|>`.
    im_start: u32,
    im_end: u32,
    /// Largest number of tokens (prompt and answer) the model takes.
    context: usize,
    /// The first token of each of [`WAYS`] and of [`STEPS`] (distinct: the decoder tells the
    /// options apart by it).
    way_first: Vec<u32>,
    step_first: Vec<u32>,
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
        let context = md
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(2048, |n| n as usize);
        let first_tokens = |options: &[&'static str]| -> Result<Vec<u32>> {
            let ids = options
                .iter()
                .map(|o| {
                    let e = tokenizer
                        .encode(*o, false)
                        .map_err(|e| load_error(path, e))?;
                    e.get_ids()
                        .first()
                        .copied()
                        .ok_or_else(|| load_error(path, format!("{o:?} encodes to no token")))
                })
                .collect::<Result<Vec<u32>>>()?;
            if (1..ids.len()).any(|k| ids[..k].contains(&ids[k])) {
                return Err(load_error(
                    path,
                    format!("the options {options:?} start with the same token"),
                ));
            }
            Ok(ids)
        };
        let (way_first, step_first) = (
            first_tokens(&WAYS.map(Direction::word))?,
            first_tokens(&STEPS.map(StepClass::word))?,
        );
        let weights =
            Llama::from_gguf(&content, &mut file, context).map_err(|e| load_error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            weights,
            tokenizer,
            im_start,
            im_end,
            context,
            way_first,
            step_first,
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

/// The model's state after the prompts of the last advice, kept at the positions where a
/// later prompt of the same plan may differ: the end of the system turn and the end of the
/// prompt's stable part (examples and history, [`user_prompt_stable`]). The next advice starts
/// from the latest of them that its own prompt begins with, and feeds only the rest.
#[derive(Default)]
struct PromptCache {
    /// Tokens of the last prompt.
    ids: Vec<u32>,
    /// Attention caches over `ids[..cache.len()]`, by increasing length.
    states: Vec<KvCache>,
}

/// Length of the common start of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The actions the answer schema allows, and the steps of a move, in its order.
const WAYS: [Direction; 3] = Direction::ALL;
const STEPS: [StepClass; 3] = StepClass::ALL;
/// `WAYS`' keep.
const KEEP: usize = 2;
const _: () = assert!(matches!(WAYS[KEEP], Direction::Keep));

/// One organ objective's choice: indices into [`WAYS`] and [`STEPS`] (the step unused when
/// the goal is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pick {
    way: usize,
    step: usize,
}

/// A place where the answer asks the model: the index of the option's first token in the
/// answer, the objective, and whether the step (else the action) is chosen there.
struct Point {
    at: usize,
    objective: usize,
    step: bool,
}

impl EmbeddedModel {
    /// The answer up to its rationale for `picks`: its text, its tokens (each piece of fixed
    /// text and each option encoded on its own) and the points where options start. A kept
    /// goal's step is written as the schema's first value, not asked for.
    fn layout(
        &self,
        oars: &[&ObjectiveReport],
        picks: &[Pick],
    ) -> Result<(String, Vec<u32>, Vec<Point>)> {
        let mut text = String::new();
        let mut ids = Vec::new();
        let put = |piece: &str, text: &mut String, ids: &mut Vec<u32>| -> Result<()> {
            ids.extend(self.encode(piece)?);
            text.push_str(piece);
            Ok(())
        };
        let mut points = Vec::new();
        put("{\"actions\": {", &mut text, &mut ids)?;
        for (n, (o, p)) in oars.iter().zip(picks).enumerate() {
            let sep = if n == 0 { "" } else { ", " };
            let head = format!(
                "{sep}\"{}\": {{\"status\": \"{}\", \"action\": \"",
                o.id,
                o.status.word()
            );
            put(&head, &mut text, &mut ids)?;
            points.push(Point {
                at: ids.len(),
                objective: n,
                step: false,
            });
            put(WAYS[p.way].word(), &mut text, &mut ids)?;
            if p.way == KEEP {
                put("\", \"step\": \"small\"}", &mut text, &mut ids)?;
            } else {
                put("\", \"step\": \"", &mut text, &mut ids)?;
                points.push(Point {
                    at: ids.len(),
                    objective: n,
                    step: true,
                });
                put(STEPS[p.step].word(), &mut text, &mut ids)?;
                put("\"}", &mut text, &mut ids)?;
            }
        }
        Ok((text, ids, points))
    }
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

    /// The attention cache after `prompt`, starting from the cached state of an earlier
    /// prompt that this one begins with; also the number of prompt tokens that were not fed
    /// again. The cache then holds this prompt's states at the end of its system turn and of
    /// its stable part (`stable`, the start of the user turn).
    fn feed_prompt(&self, system: &str, stable: &str, prompt: &[u32]) -> Result<(KvCache, usize)> {
        let m = &self.model;
        let (start, system_end) = m.chat_start(system, stable)?;
        let marks: Vec<usize> = [system_end, start.len()]
            .into_iter()
            .filter(|&p| prompt.len() >= p && prompt[..p] == start[..p])
            .collect();
        let mut cache = std::mem::take(&mut *self.cache.lock().expect("the prompt cache"));
        let shared = common_prefix(&cache.ids, prompt);
        cache.states.retain(|st| st.len() <= shared);
        let mut s = cache.states.last().cloned().unwrap_or_default();
        let reused = s.len();
        for &mark in &marks {
            if mark > s.len() {
                let from = s.len();
                m.weights
                    .forward(&mut s, &prompt[from..mark])
                    .map_err(run_error)?;
                cache.states.push(s.clone());
            }
        }
        if prompt.len() > s.len() {
            let from = s.len();
            m.weights
                .forward(&mut s, &prompt[from..])
                .map_err(run_error)?;
        }
        cache.states.retain(|st| marks.contains(&st.len()));
        cache.ids = prompt.to_vec();
        *self.cache.lock().expect("the prompt cache") = cache;
        Ok((s, reused))
    }

    /// The model's choices for the answer, found by checking a draft: the drafted answer is
    /// fed in one pass, which gives the model's state before every option; at the first point
    /// where the model prefers another option than the draft's (options are told apart by
    /// their first token, checked distinct at load), the
    /// choice is changed, the cache cut back to that point, and the rest fed again. The result
    /// is the answer a token-by-token decoder choosing the most probable option at each point
    /// would write, whatever the draft (a test checks it); a good draft needs one pass instead
    /// of one per choice. `s` holds the prompt; returns the answer's text up to its rationale,
    /// the picks, the answer's length in tokens and the number of passes.
    fn check_draft(
        &self,
        s: &mut KvCache,
        oars: &[&ObjectiveReport],
        mut picks: Vec<Pick>,
    ) -> Result<(String, Vec<Pick>, usize, usize)> {
        let m = &self.model;
        let base = s.len();
        let mut done = 0;
        let mut passes = 0;
        loop {
            let (text, ids, points) = m.layout(oars, &picks)?;
            let hidden = m.weights.forward(s, &ids[done..]).map_err(run_error)?;
            passes += 1;
            let mut redo = None;
            for p in points.iter().filter(|p| p.at > done) {
                let row = hidden.get(p.at - 1 - done).map_err(run_error)?;
                let (options, first) = if p.step {
                    (STEPS.map(StepClass::word), &m.step_first)
                } else {
                    (WAYS.map(Direction::word), &m.way_first)
                };
                let logits = m.weights.logits_of(row, first).map_err(run_error)?;
                let best =
                    (0..logits.len()).fold(0, |b, k| if logits[k] > logits[b] { k } else { b });
                let pick = &mut picks[p.objective];
                let drafted = if p.step {
                    &mut pick.step
                } else {
                    &mut pick.way
                };
                tracing::debug!(
                    objective = oars[p.objective].id,
                    chosen = options[best],
                    drafted = options[*drafted],
                    ?logits,
                    "option checked"
                );
                if best != *drafted {
                    *drafted = best;
                    redo = Some(p.at);
                    break;
                }
            }
            match redo {
                None => return Ok((text, picks, ids.len(), passes)),
                Some(at) => {
                    s.truncate(base + at).map_err(run_error)?;
                    done = at;
                }
            }
        }
    }

    /// The advice for `context`, computed on this thread.
    pub fn decide(&self, context: &AdvisorContext) -> Result<Advice> {
        self.decide_drafted(context, None).map(|(advice, _)| advice)
    }

    /// [`Self::decide`] from a given draft: an action (`tighten`, `relax` or `keep`, with a
    /// small step) for each objective of the answer in its order ([`answer_order`]), or `None` for the first few-shot
    /// example's moves. The answer is the same whatever the draft; the number of passes over
    /// the answer, returned beside it, is what the draft changes (for tests and measurements).
    pub fn decide_drafted(
        &self,
        context: &AdvisorContext,
        draft: Option<&[&str]>,
    ) -> Result<(Advice, usize)> {
        let t = Instant::now();
        let m = &self.model;
        let system = system_prompt(context, OutputMode::Actions);
        let user = user_prompt(context, OutputMode::Actions);
        let prompt = m.chat(&system, &user)?;
        // Room for the answer: about 25 tokens per objective and the rationale.
        let oars = answer_order(context);
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
        // The draft: each objective's move in the first few-shot example (the case most like
        // it, with per-objective retrieval), else keep. It decides how much work the check
        // takes, never the answer.
        let draft: Vec<Pick> = match draft {
            Some(ways) => oars
                .iter()
                .enumerate()
                .map(|(n, _)| Pick {
                    way: ways
                        .get(n)
                        .and_then(|w| WAYS.iter().position(|x| x.word() == *w))
                        .unwrap_or(KEEP),
                    step: 0,
                })
                .collect(),
            None => {
                let shown = context
                    .examples
                    .first()
                    .map(example_moves)
                    .unwrap_or_default();
                oars.iter()
                    .map(
                        |o| match shown.iter().find(|(id, ..)| *id == o.id).copied() {
                            Some((_, way, step)) => Pick {
                                way: WAYS.iter().position(|w| *w == way).unwrap_or(KEEP),
                                step: STEPS.iter().position(|w| *w == step).unwrap_or(0),
                            },
                            None => Pick { way: KEEP, step: 0 },
                        },
                    )
                    .collect()
            }
        };
        let (text, picks, answer_tokens, passes) = self.check_draft(&mut s, &oars, draft)?;
        tracing::debug!(passes, "answer checked");
        // The rationale says what was chosen; the model writes no free text (48 tokens of it
        // took a third of the advice's time and carried nothing the actions do not).
        let mut moved: Vec<String> = Vec::new();
        for (k, way) in WAYS.iter().enumerate().take(2) {
            let ids: Vec<&str> = oars
                .iter()
                .zip(&picks)
                .filter(|(_, p)| p.way == k)
                .map(|(o, _)| o.id.as_str())
                .collect();
            if !ids.is_empty() {
                moved.push(format!("{} {}", way.word(), ids.join(", ")));
            }
        }
        let rationale_text = if moved.is_empty() {
            "keep every organ objective".to_string()
        } else {
            format!("{}; keep the other organ objectives", moved.join("; "))
        };
        let text = format!("{text}}}, \"rationale\": \"{rationale_text}\"}}");
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
            tokens_out: Some(answer_tokens as u64),
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
        Ok((
            Advice {
                goals: parsed.goals,
                actions: parsed
                    .actions
                    .into_iter()
                    .filter(|a| a.action != Direction::Keep)
                    .collect(),
                rationale: parsed.rationale,
                calls: vec![record],
                repaired: Vec::new(),
            },
            passes,
        ))
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
