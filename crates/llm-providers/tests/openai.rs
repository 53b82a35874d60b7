//! The OpenAI-compatible backend against a local server speaking the chat-completions API:
//! the exact request body, real response and error bodies, rate limits, slow and malformed
//! replies.

mod common;

use std::time::Duration;

use llm_providers::advice::{LlmAdvisor, OutputMode};
use llm_providers::chat::ChatAdvisor;
use llm_providers::error::AdvisorError;
use llm_providers::layers;
use llm_providers::openai::{OpenAiBackend, ResponseFormat};
use llm_providers::prompt::{answer_max_tokens, answer_schema, system_prompt, user_prompt};
use llm_providers::reply::ReplyCause;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn advisor(server: &MockServer, format: ResponseFormat, retries: u32) -> Box<dyn LlmAdvisor> {
    layers::apply(
        ChatAdvisor::new(
            OpenAiBackend::new(
                reqwest::Client::new(),
                &format!("{}/v1", server.uri()),
                "qwen-max",
                Some("sk-test".into()),
                format,
            ),
            OutputMode::Goals,
            0.2,
        ),
        &common::policy(retries),
    )
}

/// A chat.completion object as the API returns it.
fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "qwen-max-2025-01-25",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    })
}

#[tokio::test]
async fn sends_the_exact_request_and_reads_the_reply() {
    let server = MockServer::start().await;
    let ctx = common::context();
    let expected = json!({
        "model": "qwen-max",
        "messages": [
            {"role": "system", "content": system_prompt(&ctx, OutputMode::Goals)},
            {"role": "user", "content": user_prompt(&ctx, OutputMode::Goals)}
        ],
        "temperature": 0.2,
        "max_tokens": answer_max_tokens(&ctx),
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "adjustment", "strict": true,
                "schema": answer_schema(&ctx, OutputMode::Goals)}
        }
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test"))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let a = advisor(&server, ResponseFormat::JsonSchema, 0);
    let advice = a.advise(&ctx).await.unwrap();
    assert_eq!(advice.goals.len(), 2);
    assert_eq!(advice.goals[0].id, "bladder-mean");
    assert_eq!(advice.goals[0].goal_cgy, 2369.0);
    assert!(advice.rationale.contains("Bladder"));
    let call = &advice.calls[0];
    assert_eq!((call.tokens_in, call.tokens_out), (Some(1117), Some(46)));
    // The configured model stays the record's; the name the server answered with is beside it.
    assert_eq!(call.model, "qwen-max");
    assert_eq!(call.served_model.as_deref(), Some("qwen-max-2025-01-25"));
    assert_eq!(call.attempts, 1);
    assert!(a.capabilities().json_schema);
}

#[tokio::test]
async fn json_mode_asks_for_a_json_object() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains(
            "\"response_format\":{\"type\":\"json_object\"}",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let a = advisor(&server, ResponseFormat::JsonObject, 0);
    a.advise(&common::context()).await.unwrap();
    assert!(!a.capabilities().json_schema);
}

#[tokio::test]
async fn rate_limit_is_retried_after_retry_after() {
    let server = MockServer::start().await;
    let limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "0")
        .set_body_json(json!({"error": {
            "message": "Rate limit reached for qwen-max in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1.",
            "type": "requests", "param": null, "code": "rate_limit_exceeded"}}));
    common::answer_first(&server, limited).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(common::GOOD_ANSWER)))
        .mount(&server)
        .await;
    let advice = advisor(&server, ResponseFormat::JsonSchema, 2)
        .advise(&common::context())
        .await
        .unwrap();
    assert_eq!(advice.calls[0].attempts, 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {
            "message": "The server is overloaded or not ready yet.", "type": "server_error",
            "param": null, "code": null}})))
        .expect(3)
        .mount(&server)
        .await;
    let e = advisor(&server, ResponseFormat::JsonSchema, 2)
        .advise(&common::context())
        .await
        .unwrap_err();
    // Every attempt's call is kept with the error, prompts included.
    assert_eq!(e.calls().len(), 3, "{e:?}");
    assert!(e.calls().iter().all(
        |c| !c.system.is_empty() && c.error.as_deref().is_some_and(|m| m.contains("HTTP 503"))
    ));
    match e {
        AdvisorError::Http {
            status, message, ..
        } => {
            assert_eq!(status, 503);
            assert!(message.contains("overloaded"));
        }
        other => panic!("{other}"),
    }
}

/// A usable reply never came: the first reply was prose, the repair request met a server
/// error. Both calls stay with the error (the transcript keeps them), the first with its reply.
#[tokio::test]
async fn a_failed_repair_keeps_both_calls() {
    let server = MockServer::start().await;
    common::answer_first(
        &server,
        ResponseTemplate::new(200).set_body_json(completion("I would lower it.")),
    )
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "This model's maximum context length is 4096 tokens.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})))
        .mount(&server)
        .await;
    let e = advisor(&server, ResponseFormat::JsonSchema, 0)
        .advise(&common::context())
        .await
        .unwrap_err();
    assert!(matches!(e, AdvisorError::Http { status: 400, .. }), "{e}");
    let calls = e.calls();
    assert_eq!(calls.len(), 2, "{e:?}");
    assert_eq!(calls[0].reply, "I would lower it.");
    assert!(
        calls[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(
        calls[1].messages.len(),
        3,
        "the repair request: prompt, reply, correction"
    );
    assert!(
        calls[1]
            .error
            .as_deref()
            .unwrap()
            .contains("maximum context length")
    );
}

#[tokio::test]
async fn a_bad_key_is_not_retried_and_names_the_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})))
        .expect(1)
        .mount(&server)
        .await;
    let e = advisor(&server, ResponseFormat::JsonSchema, 3)
        .advise(&common::context())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("Incorrect API key"),
        "{text}"
    );
    assert!(text.contains(&server.uri()), "{text}");
    // The real API echoes the key it refused; it never reaches a message or a transcript.
    assert!(
        !text.contains("sk-test") && text.contains("[redacted]"),
        "{text}"
    );
}

#[tokio::test]
async fn an_echoed_authorization_header_is_redacted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403).set_body_string("denied: Authorization: Bearer sk-test"),
        )
        .mount(&server)
        .await;
    let e = advisor(&server, ResponseFormat::JsonSchema, 0)
        .advise(&common::context())
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(!text.contains("sk-test"), "{text}");
    assert!(text.contains("Bearer [redacted]"), "{text}");
}

#[tokio::test]
async fn a_slow_reply_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(common::GOOD_ANSWER))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let e = advisor(&server, ResponseFormat::JsonSchema, 1)
        .advise(&common::context())
        .await
        .unwrap_err();
    assert!(matches!(e, AdvisorError::Timeout { .. }), "{e}");
    // Each timed-out attempt is recorded with the prompt it sent.
    assert_eq!(e.calls().len(), 2, "{e:?}");
    let c = &e.calls()[0];
    assert!(
        c.system.contains("physicist") && c.messages.len() == 1,
        "{c:?}"
    );
    assert!(
        c.error.as_deref().unwrap().contains("no reply within"),
        "{c:?}"
    );
    assert_eq!(c.model, "qwen-max");
}

/// A reply the server cut at its token limit (`finish_reason: "length"`) is its own problem,
/// not "not valid JSON": the repair asks again for a shorter answer without the cut text
/// (which would make the request longer and be cut the same way).
#[tokio::test]
async fn a_reply_cut_at_the_token_limit_is_asked_again_for_less() {
    let server = MockServer::start().await;
    let mut cut =
        completion("{\"rationale\": \"The bladder mean is far below its goal and the rectum");
    cut["choices"][0]["finish_reason"] = json!("length");
    common::answer_first(&server, ResponseTemplate::new(200).set_body_json(cut)).await;
    Mock::given(method("POST"))
        .and(body_string_contains("was cut off at the limit of"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let advice = advisor(&server, ResponseFormat::JsonSchema, 0)
        .advise(&common::context())
        .await
        .unwrap();
    assert_eq!(advice.repaired, vec![ReplyCause::Truncated]);
    assert!(
        advice.calls[0]
            .error
            .as_deref()
            .unwrap()
            .contains("cut off at the token limit"),
        "{:?}",
        advice.calls[0]
    );
    // The repair resends the prompt with the request for less, not the cut reply.
    assert_eq!(
        advice.calls[1].messages.len(),
        1,
        "{:?}",
        advice.calls[1].messages
    );
    assert!(!advice.calls[1].messages[0].1.contains("and the rectum\""));
}

#[tokio::test]
async fn a_truncated_reply_gets_one_repair_request() {
    let server = MockServer::start().await;
    let truncated = "{\"rationale\": \"tighten the bladder\", \"adjustments\": [{\"id\": \"bladder-mean\", \"goal_c";
    common::answer_first(
        &server,
        ResponseTemplate::new(200).set_body_json(completion(truncated)),
    )
    .await;
    // The repair request quotes the parse error and carries the model's own reply.
    Mock::given(method("POST"))
        .and(body_string_contains(
            "Your reply could not be used: the reply is not valid JSON",
        ))
        .and(body_string_contains("goal_c"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let advice = advisor(&server, ResponseFormat::JsonSchema, 0)
        .advise(&common::context())
        .await
        .unwrap();
    assert_eq!(advice.calls.len(), 2);
    assert!(
        advice.calls[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(advice.goals.len(), 2);
    // The repaired reply is counted by its cause.
    assert_eq!(advice.repaired, vec![ReplyCause::Malformed]);
}

#[tokio::test]
async fn prose_twice_is_a_typed_error_keeping_the_raw_text() {
    let server = MockServer::start().await;
    let prose = "I would lower the bladder goal a little and raise the rectum goal.";
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(prose)))
        .expect(2)
        .mount(&server)
        .await;
    let e = advisor(&server, ResponseFormat::JsonSchema, 0)
        .advise(&common::context())
        .await
        .unwrap_err();
    match e {
        AdvisorError::BadReply {
            raw,
            reason,
            causes,
            calls,
            ..
        } => {
            assert_eq!(raw, prose);
            assert!(reason.contains("not valid JSON"));
            // Both replies' causes, and both calls (the repair request included), are kept.
            assert_eq!(causes, vec![ReplyCause::Malformed; 2]);
            assert_eq!(calls.len(), 2);
            assert!(
                calls[1]
                    .messages
                    .iter()
                    .any(|(_, m)| m.contains("could not be used"))
            );
            assert!(calls.iter().all(|c| c.error.is_some()));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn unknown_ids_and_bad_goals_are_refused() {
    for (answer, expect, cause) in [
        (
            "{\"rationale\": \"x\", \"adjustments\": [{\"id\": \"kidney-mean\", \"goal_cgy\": 1500}]}",
            "does not exist",
            ReplyCause::UnknownId,
        ),
        (
            "{\"rationale\": \"x\", \"adjustments\": [{\"id\": \"bladder-mean\", \"goal_cgy\": -200}]}",
            "positive doses",
            ReplyCause::NotFinitePositive,
        ),
        (
            "{\"rationale\": \"x\", \"adjustments\": [{\"id\": \"bladder-mean\", \"goal_cgy\": \"NaN\"}]}",
            "is not a number",
            ReplyCause::NotFinitePositive,
        ),
        (
            "{\"rationale\": \"x\", \"adjustments\": [{\"id\": \"bladder-mean\", \"goal_cgy\": 2400}, {\"id\": \"bladder-mean\", \"goal_cgy\": 2300}]}",
            "twice",
            ReplyCause::DuplicateId,
        ),
        ("{\"adjustments\": []}", "rationale", ReplyCause::Malformed),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(answer)))
            .expect(2)
            .mount(&server)
            .await;
        let e = advisor(&server, ResponseFormat::JsonSchema, 0)
            .advise(&common::context())
            .await
            .unwrap_err();
        assert!(e.to_string().contains(expect), "{answer}: {e}");
        match e {
            AdvisorError::BadReply { causes, .. } => assert_eq!(causes, vec![cause; 2], "{answer}"),
            other => panic!("{answer}: {other}"),
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_the_api_shape_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"id\": \"chatcmpl-1\", \"choi"))
        .expect(1)
        .mount(&server)
        .await;
    let e = advisor(&server, ResponseFormat::JsonSchema, 3)
        .advise(&common::context())
        .await
        .unwrap_err();
    assert!(matches!(e, AdvisorError::Protocol { .. }), "{e}");
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_a_cut_reply_not_an_unreachable_server() {
    use std::io::{Read, Write};
    // A server that promises 500 bytes, sends 11 and closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 65536];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"choices\":",
        )
        .unwrap();
    });
    let backend = OpenAiBackend::new(
        reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/v1"),
        "qwen-max",
        None,
        ResponseFormat::JsonSchema,
    );
    let advisor = layers::apply(
        ChatAdvisor::new(backend, OutputMode::Goals, 0.2),
        &common::policy(0),
    );
    let e = advisor.advise(&common::context()).await.unwrap_err();
    serve.join().unwrap();
    let text = e.to_string();
    assert!(text.contains("cut short"), "{text}");
    assert!(!text.contains("unreachable"), "{text}");
}

/// A server that never answers: when the attempt times out the request is dropped and its
/// connection closed, so a server that watches its clients (llama.cpp's does) stops
/// generating instead of running on for nobody.
#[tokio::test]
async fn a_timed_out_request_closes_its_connection() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut received = 0;
        // Read the request, never answer, and wait for the client to close the connection
        // (a read of 0 bytes) or reset it.
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received += n,
            }
        }
    });
    let a = layers::apply(
        ChatAdvisor::new(
            OpenAiBackend::new(
                reqwest::Client::new(),
                &format!("{url}/v1"),
                "smollm2",
                None,
                ResponseFormat::JsonSchema,
            ),
            OutputMode::Goals,
            0.2,
        ),
        &common::policy(0),
    );
    let e = a.advise(&common::context()).await.unwrap_err();
    assert!(matches!(e, AdvisorError::Timeout { .. }), "{e}");
    let received = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the connection is still open 5 s after the timeout")
        .unwrap();
    assert!(received > 0, "the request reached the server");
}

/// Limits from a provider file reach the request: the token limit as set, and no `maxLength`
/// for a server that refuses it.
#[tokio::test]
async fn the_answer_limits_reach_the_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("\"max_tokens\":512"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(common::GOOD_ANSWER)))
        .expect(1)
        .mount(&server)
        .await;
    let a = ChatAdvisor::new(
        OpenAiBackend::new(
            reqwest::Client::new(),
            &format!("{}/v1", server.uri()),
            "gpt-4o-mini",
            None,
            ResponseFormat::JsonSchema,
        ),
        OutputMode::Goals,
        0.2,
    )
    .with_limits(llm_providers::prompt::AnswerLimits {
        rationale_max_chars: 600,
        schema_max_length: false,
        max_tokens: Some(512),
    });
    let advice = a.advise(&common::context()).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let body = String::from_utf8_lossy(&requests[0].body);
    assert!(
        !body.contains("maxLength") && body.contains("\"maxItems\":6"),
        "{body}"
    );
    assert_eq!(advice.goals.len(), 2);
}
