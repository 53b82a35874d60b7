//! The client against a scripted HTTP/1.1 server on 127.0.0.1 that misbehaves in one way per
//! case (one scripted answer per request, the last repeating): a server of another protocol
//! version, an answer cut short, an answer that is not JSON, a server slower than the
//! timeout. Each ends in a clear error saying whether to retry, never a panic or a wrong
//! value.

use std::time::{Duration, Instant};

use tps_utps_bridge::RemoteTps;
use tps_utps_bridge::config::{PatientTransfer, RemoteConfig};
use tps_utps_bridge::testing::{Answer, serve};

fn hello(versions: &str) -> Answer {
    Answer::json(
        200,
        format!(
            "{{\"protocol\": \"autoplan-tps\", \"versions\": {versions}, \"server\": \"s\", \
             \"tps\": \"t\"}}"
        ),
    )
}

fn config(url: &str, timeout: Duration, retries: u32) -> RemoteConfig {
    RemoteConfig {
        origin: "faults.toml".into(),
        endpoint: url.into(),
        token_env: None,
        patient: PatientTransfer::Upload,
        timeout,
        retries,
        backoff: Duration::from_millis(20),
        total_limit: Duration::from_secs(20),
        poll: Duration::from_secs(1),
    }
}

/// Opens a case on the scripted server; the error it ends with.
fn open_error(script: Vec<Answer>, timeout: Duration, retries: u32) -> tps_api::Error {
    let url = serve(script);
    let patient = tempfile::tempdir().unwrap();
    std::fs::write(patient.path().join("patient.toml"), "id = \"x\"\n").unwrap();
    let protocol = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/protocols/cervix.toml");
    RemoteTps::open(&config(&url, timeout, retries), patient.path(), &protocol)
        .err()
        .expect("the open fails")
}

#[test]
fn a_server_of_another_protocol_version_is_named() {
    let e = open_error(vec![hello("[2, 3]")], Duration::from_secs(5), 0);
    assert!(!e.is_temporary());
    let e = e.to_string();
    assert!(
        e.contains("unsupported-version") && e.contains("[2, 3]") && e.contains("1"),
        "{e}"
    );
}

#[test]
fn an_answer_cut_short_is_a_bad_response_not_a_value() {
    let opened = "{\"case\": \"c-1\", \"tps\": \"t\", \"idle_limit_s\": 60.0}";
    let e = open_error(
        vec![hello("[1]"), Answer::cut(opened, 20)],
        Duration::from_secs(5),
        0,
    )
    .to_string();
    assert!(e.contains("bad-response") && e.contains("cut short"), "{e}");
}

#[test]
fn an_answer_that_is_not_json_is_quoted() {
    let e = open_error(
        vec![
            hello("[1]"),
            Answer::json(200, "<html>proxy sign-in</html>"),
        ],
        Duration::from_secs(5),
        0,
    );
    assert!(!e.is_temporary());
    let e = e.to_string();
    assert!(
        e.contains("not the protocol's") && e.contains("proxy sign-in"),
        "{e}"
    );
}

#[test]
fn an_error_without_a_protocol_body_keeps_its_status() {
    let e = open_error(
        vec![hello("[1]"), Answer::json(502, "Bad Gateway")],
        Duration::from_secs(5),
        1,
    );
    assert!(e.is_temporary());
    let e = e.to_string();
    assert!(e.contains("HTTP 502") && e.contains("Bad Gateway"), "{e}");
}

#[test]
fn a_server_slower_than_the_timeout_is_a_temporary_timeout_after_the_retries() {
    let t = Instant::now();
    let e = open_error(
        vec![Answer::json(200, "{}").after(Duration::from_secs(3))],
        Duration::from_millis(500),
        1,
    );
    assert!(e.is_temporary());
    assert!(e.to_string().contains("timeout"), "{e}");
    // Two attempts of 0.5 s and one short wait, not the server's 3 s each.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
