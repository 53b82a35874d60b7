//! One conformance suite for every backend: each is built from a provider file through the
//! factory (HTTP backends pointed at local servers speaking their API) and must give a usable,
//! recorded adjustment for the same context.

mod common;

use std::path::Path;

use llm_providers::advice::{Advice, AdvisorContext, LlmAdvisor};
use llm_providers::config::{ProviderConfig, build};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What every advisor must satisfy.
async fn conforms(advisor: &dyn LlmAdvisor, ctx: &AdvisorContext) -> Advice {
    assert!(!advisor.name().is_empty());
    let caps = advisor.capabilities();
    let advice = advisor.advise(ctx).await.unwrap();
    let mut ids: Vec<&str> = advice.goals.iter().map(|g| g.id.as_str()).collect();
    for g in &advice.goals {
        assert!(
            ctx.current.objectives.iter().any(|o| o.id == g.id),
            "{}: unknown id {}",
            advisor.name(),
            g.id
        );
        assert!(g.goal_cgy.is_finite() && g.goal_cgy > 0.0, "{g:?}");
    }
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate ids");
    assert!(!advice.goals.is_empty(), "this context needs changes");
    assert!(!advice.rationale.trim().is_empty());
    // Model calls, remote or in-process, are recorded; the rule-based physicist makes none.
    if caps.network {
        assert!(!advice.calls.is_empty(), "model calls must be recorded");
    }
    for c in &advice.calls {
        assert!(!c.reply.is_empty() && c.latency_s >= 0.0 && c.attempts >= 1);
        assert!(!c.system.is_empty() && !c.messages.is_empty());
    }
    if caps.deterministic {
        // The same answer (a call's latency may differ).
        let again = advisor.advise(ctx).await.unwrap();
        assert_eq!(
            (&again.goals, &again.actions, &again.rationale),
            (&advice.goals, &advice.actions, &advice.rationale)
        );
        let replies = |a: &Advice| a.calls.iter().map(|c| c.reply.clone()).collect::<Vec<_>>();
        assert_eq!(replies(&again), replies(&advice));
    }
    advice
}

fn config(text: &str) -> ProviderConfig {
    ProviderConfig::parse(text, Path::new("test-provider.toml")).unwrap()
}

#[tokio::test]
async fn rule_based() {
    let advisor = build(&config("kind = \"rule-based\"\n")).unwrap();
    let advice = conforms(advisor.as_ref(), &common::context()).await;
    // Bladder (value 0): 100 cGy below its current mean; rectum (above): relaxed by 50 cGy.
    let goal = |id: &str| advice.goals.iter().find(|g| g.id == id).map(|g| g.goal_cgy);
    assert_eq!(goal("bladder-mean"), Some(2369.0));
    assert_eq!(goal("rectum-mean"), Some(2950.0));
    assert_eq!(goal("bowel-mean"), None, "inside its range");
    assert_eq!(goal("ptv-min"), None, "targets are kept");
    assert_eq!(goal("r2-max"), None, "rings are kept");
}

/// The offline model, for real on the CPU (feature `embedded`; the model comes from
/// scripts/fetch-offline-model.sh, which scripts/test.sh runs first).
#[cfg(feature = "embedded")]
#[tokio::test]
async fn embedded() {
    let model = common::root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{}: run scripts/fetch-offline-model.sh",
        model.display()
    );
    let advisor = build(&config(&format!(
        "kind = \"embedded\"\nmodel = {:?}\noutput-mode = \"actions\"\n",
        model.display().to_string()
    )))
    .unwrap();
    assert!(!advisor.capabilities().network);
    let advice = conforms(advisor.as_ref(), &common::context()).await;
    let call = &advice.calls[0];
    assert!(call.tokens_in.unwrap() > 200, "{call:?}");
    // The answer is valid JSON of the actions schema by construction.
    let v: serde_json::Value = serde_json::from_str(&call.reply).unwrap();
    assert!(
        v["actions"].is_object() && v["rationale"].is_string(),
        "{v}"
    );

    // The next iteration's prompt extends this one's examples and history: the model keeps
    // its state over that start instead of reading it again, and answers exactly as a fresh
    // model that reads the whole prompt.
    let mut next = common::context();
    next.history.push(llm_providers::advice::HistoryEntry {
        report: next.current.clone(),
        changes: advice.goals.clone(),
        rationale: advice.rationale.clone(),
    });
    next.current.iteration += 1;
    for o in &mut next.current.objectives {
        o.current_cgy -= 50.0;
    }
    let cached = advisor.advise(&next).await.unwrap();
    let reused = cached.calls[0].tokens_cached.unwrap();
    let stable = llm_providers::prompt::user_prompt_stable(
        &common::context(),
        llm_providers::advice::OutputMode::Actions,
    );
    assert!(
        reused as usize > stable.len() / 8,
        "{reused} tokens reused of a stable start of {} bytes",
        stable.len()
    );
    let fresh = build(&config(&format!(
        "kind = \"embedded\"\nmodel = {:?}\noutput-mode = \"actions\"\n",
        model.display().to_string()
    )))
    .unwrap()
    .advise(&next)
    .await
    .unwrap();
    assert_eq!(fresh.calls[0].tokens_cached, Some(0));
    assert_eq!(cached.calls[0].reply, fresh.calls[0].reply);

    // The answer is the model's, not the draft's that the decoder checks in one pass: drafts
    // of the example's moves, of all keep and of all tighten give one answer, and a draft
    // that is wrong somewhere takes more passes.
    let drafting = llm_providers::embedded::EmbeddedAdvisor::load(&model).unwrap();
    let mut shown = common::context();
    shown.examples.push(common::example());
    let oars = shown
        .current
        .objectives
        .iter()
        .filter(|o| o.role == tps_api::Role::Oar)
        .count();
    let (by_example, _) = drafting.decide_drafted(&shown, None).unwrap();
    let (by_keep, _) = drafting
        .decide_drafted(&shown, Some(&vec!["keep"; oars]))
        .unwrap();
    let (by_tighten, passes) = drafting
        .decide_drafted(&shown, Some(&vec!["tighten"; oars]))
        .unwrap();
    assert_eq!(by_example.calls[0].reply, by_keep.calls[0].reply);
    assert_eq!(by_example.calls[0].reply, by_tighten.calls[0].reply);
    let tightened = by_example.calls[0].reply.matches("\"tighten\"").count();
    assert!(
        tightened == oars || passes > 1,
        "{passes} passes: {}",
        by_example.calls[0].reply
    );

    // A prompt longer than the model's context is a typed error saying so, not a crash.
    let mut long = common::context();
    let entry = long.history[0].clone();
    long.history = vec![entry; 150];
    let e = advisor.advise(&long).await.unwrap_err().to_string();
    assert!(e.contains("exceeds the model's context"), "{e}");

    // The tokenizer built from the GGUF metadata: exact round trip of a prompt, and SmolLM2's
    // pre-tokenizer splitting numbers into single digits.
    let m = llm_providers::embedded::EmbeddedModel::load(&model).unwrap();
    let text = &call.messages[0].1;
    assert_eq!(&m.decode(&m.encode(text).unwrap()), text);
    // The cached advice started exactly where the first prompt's stable part ended: the
    // system turn and the user turn up to the end of the first context's history.
    let system_turn = m.encode(&format!("system\n{}", call.system)).unwrap().len();
    let user_start = m.encode(&format!("user\n{stable}")).unwrap().len();
    let newline = m.encode("\n").unwrap().len();
    assert_eq!(
        reused as usize,
        1 + system_turn + 1 + newline + 1 + user_start,
        "the cached advice restarted elsewhere than the end of the stable part"
    );
    let digits = m.encode("3000 cGy").unwrap();
    let pieces: Vec<String> = digits.iter().map(|&t| m.decode(&[t])).collect();
    assert_eq!(&pieces[..4], ["3", "0", "0", "0"], "{pieces:?}");
}

#[tokio::test]
async fn openai_compatible() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952,
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": common::GOOD_ANSWER},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940}
        })))
        .mount(&server)
        .await;
    let c = config(&format!(
        "kind = \"openai-compatible\"\nmodel = \"Qwen/Qwen2.5-7B-Instruct\"\nendpoint = \"{}/v1\"\ntimeout-s = 5\n",
        server.uri()
    ));
    conforms(build(&c).unwrap().as_ref(), &common::context()).await;
}

#[tokio::test]
async fn gemini() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-1.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": common::GOOD_ANSWER}], "role": "model"},
                "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 1204, "candidatesTokenCount": 61, "totalTokenCount": 1265},
            "modelVersion": "gemini-1.5-flash-002"
        })))
        .mount(&server)
        .await;
    // The key comes from the environment; this variable name is used by this test only.
    // SAFETY: no other test reads or writes it.
    unsafe { std::env::set_var("AUTOPLAN_TEST_GEMINI_KEY", "AIza-test") };
    let c = config(&format!(
        "kind = \"gemini\"\nmodel = \"gemini-1.5-flash\"\nendpoint = \"{}\"\napi-key-env = \"AUTOPLAN_TEST_GEMINI_KEY\"\n",
        server.uri()
    ));
    conforms(build(&c).unwrap().as_ref(), &common::context()).await;
}

#[tokio::test]
async fn ollama() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "llama3.2", "created_at": "2026-11-29T04:30:04.380923Z",
            "message": {"role": "assistant", "content": common::GOOD_ANSWER},
            "done_reason": "stop", "done": true, "total_duration": 2416542416u64,
            "load_duration": 28095125, "prompt_eval_count": 1024,
            "prompt_eval_duration": 1010000000, "eval_count": 52, "eval_duration": 1300000000
        })))
        .mount(&server)
        .await;
    let c = config(&format!(
        "kind = \"ollama\"\nmodel = \"llama3.2\"\nendpoint = \"{}\"\n",
        server.uri()
    ));
    conforms(build(&c).unwrap().as_ref(), &common::context()).await;
}

/// Live checks against the real services; run with the key set, e.g.
/// `OPENAI_API_KEY=... cargo test -p llm-providers --test conformance -- --ignored`.
#[tokio::test]
#[ignore = "needs the network and an API key"]
async fn live_endpoints() {
    for (file, var) in [
        ("openai-gpt-4o-mini.toml", "OPENAI_API_KEY"),
        ("qwen-2.5-max.toml", "DASHSCOPE_API_KEY"),
        ("gemini-1.5-flash.toml", "GEMINI_API_KEY"),
    ] {
        if std::env::var(var).is_err() {
            eprintln!("{file}: {var} not set, skipped");
            continue;
        }
        let c = ProviderConfig::load(&common::root().join("configs/providers").join(file)).unwrap();
        conforms(build(&c).unwrap().as_ref(), &common::context()).await;
    }
}

/// The OpenAI-compatible backend against a real server at `AUTOPLAN_OPENAI_URL` (base URL up to
/// `/v1`), model `AUTOPLAN_OPENAI_MODEL`, key in the variable `AUTOPLAN_OPENAI_KEY_ENV` names
/// (if any). `scripts/llama-server/conformance.sh` runs it against llama.cpp's server with the
/// offline model; the same test points at vLLM, LM Studio or a cloud endpoint.
///
/// What a real server must do with our requests: answer within the schema (ids from the
/// table, a bounded rationale), report its token counts, honour the token limit and say when
/// it cut a reply (`finish_reason: "length"`), which the advisor asks again for less.
#[tokio::test]
#[ignore = "needs a real OpenAI-compatible server: scripts/llama-server/conformance.sh"]
async fn real_openai_compatible_server() {
    let Ok(url) = std::env::var("AUTOPLAN_OPENAI_URL") else {
        panic!("set AUTOPLAN_OPENAI_URL to the server's base URL, e.g. http://127.0.0.1:8080/v1");
    };
    let model = std::env::var("AUTOPLAN_OPENAI_MODEL").unwrap_or_else(|_| "smollm2".into());
    let key = std::env::var("AUTOPLAN_OPENAI_KEY_ENV")
        .map(|v| format!("api-key-env = {v:?}\n"))
        .unwrap_or_default();
    let provider = |extra: &str| {
        config(&format!(
            "kind = \"openai-compatible\"\nmodel = {model:?}\nendpoint = {url:?}\n{key}\
             output-mode = \"actions\"\nresponse-format = \"json-schema\"\ntimeout-s = 120\n\
             retries = 0\ntemperature = 0.0\n{extra}"
        ))
    };
    let ctx = common::context();

    // Every reply is within the schema (the server compiles it into a grammar): a JSON object
    // whose rationale is within its length, with one entry per objective keyed by its id; each
    // call is recorded with the configured model, the prompt
    // and the server's token counts, within the limit. Whether the content is usable is the
    // model's business.
    let c = provider("");
    let limit = llm_providers::prompt::answer_max_tokens_with(&ctx, &c.limits);
    let t = std::time::Instant::now();
    let calls = match build(&c).unwrap().advise(&ctx).await {
        Ok(advice) => advice.calls,
        Err(e) => {
            let llm_providers::error::AdvisorError::BadReply { causes, .. } = &e else {
                panic!("not a reply the reader refused: {e}");
            };
            use llm_providers::reply::ReplyCause::{Malformed, Truncated};
            assert!(
                !causes.iter().any(|c| matches!(c, Malformed | Truncated)),
                "a reply outside the schema or cut: {e:?}"
            );
            e.calls().to_vec()
        }
    };
    eprintln!(
        "{model} at {url}: {:.1} s for {} call(s); last reply {:?}",
        t.elapsed().as_secs_f64(),
        calls.len(),
        calls.last().map(|c| &c.reply)
    );
    // The answer's entries: the objectives that may move (the organ objectives here).
    let ids: Vec<&str> = llm_providers::prompt::answer_order(&ctx)
        .iter()
        .map(|o| o.id.as_str())
        .collect();
    assert!(!ids.is_empty() && ids.len() < ctx.current.objectives.len());
    for call in &calls {
        assert_eq!(call.model, model);
        assert!(!call.system.is_empty() && !call.reply.is_empty());
        assert!(call.tokens_in.is_some_and(|n| n > 200), "{call:?}");
        assert!(
            call.tokens_out.is_some_and(|n| n <= u64::from(limit)),
            "{call:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&call.reply).unwrap();
        let rationale = v["rationale"].as_str().unwrap();
        assert!(rationale.chars().count() <= c.limits.rationale_max_chars);
        // One entry per objective that may move, keyed by its id: each once, none left out.
        let by_id = v["actions"].as_object().unwrap();
        assert_eq!(by_id.len(), ids.len(), "{v}");
        for id in by_id.keys() {
            assert!(ids.contains(&id.as_str()), "{id}");
        }
    }

    // A token limit too small for any answer: the server cuts the reply and says so; the
    // advisor reports the cut (not "not valid JSON") and asks again for less.
    let tiny = provider("max-tokens = 16\n");
    match build(&tiny).unwrap().advise(&ctx).await {
        Ok(a) => assert_eq!(
            a.repaired,
            vec![llm_providers::reply::ReplyCause::Truncated]
        ),
        Err(e) => {
            let calls = e.calls();
            assert_eq!(calls.len(), 2, "{e:?}");
            for c in calls {
                let err = c.error.as_deref().unwrap_or_default();
                assert!(err.contains("cut off at the token limit"), "{c:?}");
                assert!(c.tokens_out.is_some_and(|n| n <= 16), "{c:?}");
            }
        }
    }
}
