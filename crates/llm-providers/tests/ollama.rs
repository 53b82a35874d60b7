//! The Ollama backend (through ollama-rs) against a local server speaking `/api/chat`.

mod common;

use llm_providers::advice::{LlmAdvisor, OutputMode};
use llm_providers::chat::ChatAdvisor;
use llm_providers::error::AdvisorError;
use llm_providers::layers;
use llm_providers::ollama::OllamaBackend;
use llm_providers::prompt::{answer_schema, system_prompt, user_prompt};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

fn advisor(server: &MockServer, retries: u32) -> Box<dyn LlmAdvisor> {
    let url = reqwest::Url::parse(&server.uri()).unwrap();
    layers::apply(
        ChatAdvisor::new(
            OllamaBackend::new(reqwest::Client::new(), &url, "llama3.2"),
            OutputMode::Goals,
            0.2,
        ),
        &common::policy(retries),
    )
}

fn chat_response(content: &str) -> Value {
    json!({
        "model": "llama3.2",
        "created_at": "2026-11-29T04:30:04.380923Z",
        "message": {"role": "assistant", "content": content},
        "done_reason": "stop",
        "done": true,
        "total_duration": 2416542416u64,
        "load_duration": 28095125,
        "prompt_eval_count": 1024,
        "prompt_eval_duration": 1010000000,
        "eval_count": 52,
        "eval_duration": 1300000000
    })
}

/// The fields Ollama's `/api/chat` reads, checked one by one (ollama-rs may add fields with
/// their defaults, which the server ignores).
struct ChatBody(Vec<(&'static str, Value)>);

impl Match for ChatBody {
    fn matches(&self, request: &Request) -> bool {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return false;
        };
        self.0.iter().all(|(p, v)| body.pointer(p) == Some(v))
    }
}

#[tokio::test]
async fn sends_model_messages_schema_and_options() {
    let server = MockServer::start().await;
    let ctx = common::context();
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(ChatBody(vec![
            ("/model", json!("llama3.2")),
            ("/stream", json!(false)),
            ("/messages/0/role", json!("system")),
            (
                "/messages/0/content",
                json!(system_prompt(&ctx, OutputMode::Goals)),
            ),
            ("/messages/1/role", json!("user")),
            ("/messages/1/content", json!(user_prompt(&ctx))),
            ("/format", answer_schema(&ctx, OutputMode::Goals)),
            ("/options/temperature", json!(0.2)),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_response(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let advice = advisor(&server, 0).advise(&ctx).await.unwrap();
    assert_eq!(advice.goals.len(), 2);
    assert_eq!(advice.calls[0].tokens_in, Some(1024));
    assert_eq!(advice.calls[0].tokens_out, Some(52));
}

#[tokio::test]
async fn a_missing_model_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": "model \"llama3.2\" not found, try pulling it first"})))
        .expect(1)
        .mount(&server)
        .await;
    let e = advisor(&server, 3)
        .advise(&common::context())
        .await
        .unwrap_err();
    match e {
        AdvisorError::Http {
            status, message, ..
        } => {
            assert_eq!(status, 404);
            assert!(message.contains("try pulling it first"));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn an_overloaded_server_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": "server busy, please try again.  maximum pending requests exceeded"}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_response(common::GOOD_ANSWER)))
        .mount(&server)
        .await;
    let advice = advisor(&server, 2)
        .advise(&common::context())
        .await
        .unwrap();
    assert_eq!(advice.calls[0].attempts, 2);
}
