//! The Gemini backend against a local server speaking `generateContent`.

mod common;

use llm_providers::advice::{LlmAdvisor, OutputMode};
use llm_providers::chat::ChatAdvisor;
use llm_providers::error::AdvisorError;
use llm_providers::gemini::GeminiBackend;
use llm_providers::layers;
use llm_providers::prompt::{answer_max_tokens, answer_schema, system_prompt, user_prompt};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn advisor(server: &MockServer, mode: OutputMode, retries: u32) -> Box<dyn LlmAdvisor> {
    layers::apply(
        ChatAdvisor::new(
            GeminiBackend::new(
                reqwest::Client::new(),
                &server.uri(),
                "gemini-1.5-flash",
                Some("AIza-test".into()),
            ),
            mode,
            0.2,
        ),
        &common::policy(retries),
    )
}

fn generated(text: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": "STOP",
            "avgLogprobs": -0.0521
        }],
        "usageMetadata": {"promptTokenCount": 1204, "candidatesTokenCount": 61, "totalTokenCount": 1265},
        "modelVersion": "gemini-1.5-flash-002"
    })
}

#[tokio::test]
async fn sends_the_exact_request_with_a_gemini_schema() {
    let server = MockServer::start().await;
    let ctx = common::context();
    // The schema in Gemini's dialect, written out: upper-case types, no additionalProperties,
    // each object's property order given (Gemini otherwise writes them alphabetically); the
    // actions first, then the rationale of bounded length; one entry per organ objective (only
    // those move under the study's termination) keyed by its id, restating its status from the
    // report before its action.
    let oars: Vec<_> = ctx
        .current
        .objectives
        .iter()
        .filter(|o| o.role == tps_api::Role::Oar)
        .collect();
    let ids: Vec<&str> = oars.iter().map(|o| o.id.as_str()).collect();
    let entries: serde_json::Map<String, serde_json::Value> = oars
        .iter()
        .map(|o| {
            (
                o.id.clone(),
                json!({
                    "type": "OBJECT",
                    "propertyOrdering": ["status", "action", "step"],
                    "properties": {
                        "status": {"type": "STRING", "enum": [o.status.word()]},
                        "action": {"type": "STRING", "enum": ["tighten", "relax", "keep"]},
                        "step": {"type": "STRING", "enum": ["small", "medium", "large"]}
                    },
                    "required": ["status", "action", "step"]
                }),
            )
        })
        .collect();
    let schema = json!({
        "type": "OBJECT",
        "propertyOrdering": ["actions", "rationale"],
        "properties": {
            "actions": {"type": "OBJECT", "propertyOrdering": ids, "properties": entries, "required": ids},
            "rationale": {"type": "STRING", "maxLength": 600}
        },
        "required": ["actions", "rationale"]
    });
    assert_eq!(
        llm_providers::gemini::gemini_schema(&answer_schema(&ctx, OutputMode::Actions)),
        schema
    );
    let expected = json!({
        "systemInstruction": {"parts": [{"text": system_prompt(&ctx, OutputMode::Actions)}]},
        "contents": [{"role": "user", "parts": [{"text": user_prompt(&ctx, OutputMode::Actions)}]}],
        "generationConfig": {
            "temperature": 0.2,
            "maxOutputTokens": answer_max_tokens(&ctx),
            "responseMimeType": "application/json",
            "responseSchema": schema
        }
    });
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-1.5-flash:generateContent"))
        .and(header("x-goog-api-key", "AIza-test"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(generated(
            "{\"rationale\": \"bladder has room\", \"actions\": [{\"id\": \"bladder-mean\", \"action\": \"tighten\", \"step\": \"large\"}, {\"id\": \"rectum-mean\", \"action\": \"relax\", \"step\": \"small\"}]}",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let advice = advisor(&server, OutputMode::Actions, 0)
        .advise(&ctx)
        .await
        .unwrap();
    // Actions become goals in Rust: bladder 2469 current -> 2369; rectum 2900 + 20.
    assert_eq!(advice.goals[0].goal_cgy, 2369.0);
    assert_eq!(advice.goals[1].goal_cgy, 2920.0);
    assert_eq!(advice.actions.len(), 2);
    assert_eq!(advice.calls[0].tokens_in, Some(1204));
    assert_eq!(advice.calls[0].model, "gemini-1.5-flash");
    assert_eq!(
        advice.calls[0].served_model.as_deref(),
        Some("gemini-1.5-flash-002")
    );
}

#[tokio::test]
async fn quota_exhaustion_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED"}})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(generated(common::GOOD_ANSWER)))
        .mount(&server)
        .await;
    let advice = advisor(&server, OutputMode::Goals, 3)
        .advise(&common::context())
        .await
        .unwrap();
    assert_eq!(advice.calls[0].attempts, 3);
}

#[tokio::test]
async fn an_invalid_key_is_reported_without_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT"}})))
        .expect(1)
        .mount(&server)
        .await;
    let e = advisor(&server, OutputMode::Goals, 3)
        .advise(&common::context())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("API key not valid"), "{e}");
}

#[tokio::test]
async fn a_blocked_prompt_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promptFeedback": {"blockReason": "OTHER"},
            "usageMetadata": {"promptTokenCount": 1204, "totalTokenCount": 1204},
            "modelVersion": "gemini-1.5-flash-002"
        })))
        .mount(&server)
        .await;
    let e = advisor(&server, OutputMode::Goals, 0)
        .advise(&common::context())
        .await
        .unwrap_err();
    assert!(
        matches!(e, AdvisorError::Protocol { .. }) && e.to_string().contains("OTHER"),
        "{e}"
    );
}
