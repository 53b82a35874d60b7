//! The Ollama backend against a local server speaking `/api/chat`.

mod common;

use llm_providers::advice::{LlmAdvisor, OutputMode};
use llm_providers::chat::ChatAdvisor;
use llm_providers::error::AdvisorError;
use llm_providers::layers;
use llm_providers::ollama::OllamaBackend;
use llm_providers::prompt::{answer_max_tokens, answer_schema, system_prompt, user_prompt};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
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

/// The whole body of the request, compared as JSON.
struct ChatBody(Value);

impl Match for ChatBody {
    fn matches(&self, request: &Request) -> bool {
        serde_json::from_slice::<Value>(&request.body).is_ok_and(|b| b == self.0)
    }
}

#[tokio::test]
async fn sends_model_messages_schema_and_options() {
    let server = MockServer::start().await;
    let ctx = common::context();
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(ChatBody(json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": system_prompt(&ctx, OutputMode::Goals)},
                {"role": "user", "content": user_prompt(&ctx, OutputMode::Goals)}
            ],
            "stream": false,
            "format": answer_schema(&ctx, OutputMode::Goals),
            "options": {"temperature": 0.2,
                        "num_predict": answer_max_tokens(&ctx)}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_response(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let advice = advisor(&server, 0).advise(&ctx).await.unwrap();
    assert_eq!(advice.goals.len(), 2);
    assert_eq!(advice.calls[0].tokens_in, Some(1024));
    assert_eq!(advice.calls[0].tokens_out, Some(52));
}

/// `done_reason: "length"`: Ollama stopped at `num_predict`; the reply is asked again for
/// less, not reported as invalid JSON.
#[tokio::test]
async fn a_reply_stopped_at_num_predict_is_asked_again_for_less() {
    let server = MockServer::start().await;
    let mut cut = chat_response("{\"rationale\": \"The bladder");
    cut["done_reason"] = json!("length");
    common::answer_first(&server, ResponseTemplate::new(200).set_body_json(cut)).await;
    Mock::given(method("POST"))
        .and(body_string_contains("was cut off at the limit of"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_response(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let advice = advisor(&server, 0)
        .advise(&common::context())
        .await
        .unwrap();
    assert_eq!(
        advice.repaired,
        vec![llm_providers::reply::ReplyCause::Truncated]
    );
}

#[tokio::test]
async fn a_missing_model_is_not_retried() {
    let (status, message) = http_error_of_one_request(
        404,
        json!({"error": "model \"llama3.2\" not found, try pulling it first"}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(message.contains("try pulling it first"));
}

/// The status and message of the HTTP error an advice ends with when the server answers
/// `status` with `body`, checking it asked once (3 retries allowed, none due).
async fn http_error_of_one_request(status: u16, body: Value) -> (u16, String) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    match advisor(&server, 3).advise(&common::context()).await {
        Err(AdvisorError::Http {
            status, message, ..
        }) => (status, message),
        other => panic!("{:?}", other.map(|a| a.rationale)),
    }
}

#[tokio::test]
async fn an_overloaded_server_is_retried() {
    let server = MockServer::start().await;
    common::answer_first(
        &server,
        ResponseTemplate::new(503).set_body_json(
            json!({"error": "server busy, please try again.  maximum pending requests exceeded"}),
        ),
    )
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

#[tokio::test]
async fn a_reply_that_is_not_json_is_quoted_in_the_error() {
    // A proxy in front of the server answering with its own page.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "<html><body>Gateway login required</body></html>",
            "text/html",
        ))
        .mount(&server)
        .await;
    let message = protocol_error(&server).await;
    assert!(message.contains("not JSON"), "{message}");
    assert!(message.contains("Gateway login required"), "{message}");
}

#[tokio::test]
async fn the_status_of_an_error_is_the_servers_and_an_error_object_is_read() {
    // A 404 whose body carries an error object (a server in front of Ollama), not a string.
    let (status, message) = http_error_of_one_request(
        404,
        json!({"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(message, "File Not Found");
}

#[tokio::test]
async fn a_reply_without_a_message_is_a_protocol_error_quoting_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "llama3.2", "created_at": "2026-11-29T04:30:04Z", "done": true})))
        .mount(&server)
        .await;
    let message = protocol_error(&server).await;
    assert!(message.contains("message.content"), "{message}");
    assert!(message.contains("created_at"), "{message}");
}

/// The message of the protocol error an advice from `server` ends with (no retries).
async fn protocol_error(server: &MockServer) -> String {
    match advisor(server, 0).advise(&common::context()).await {
        Err(AdvisorError::Protocol { message, .. }) => message,
        other => panic!("{:?}", other.map(|a| a.rationale)),
    }
}
