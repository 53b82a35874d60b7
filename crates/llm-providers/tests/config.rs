//! Provider files: the shipped ones parse, bad ones are refused with file, field and value,
//! and missing keys or unreachable endpoints give clear errors.

mod common;

use std::path::Path;

use llm_providers::advice::OutputMode;
use llm_providers::config::{Kind, ProviderConfig, build};
use llm_providers::error::AdvisorError;

fn parse(text: &str) -> Result<ProviderConfig, AdvisorError> {
    ProviderConfig::parse(text, Path::new("p.toml"))
}

#[test]
fn shipped_provider_files_parse() {
    let dir = common::root().join("configs/providers");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let c = ProviderConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        kinds.push(c.kind);
    }
    for k in [
        Kind::RuleBased,
        Kind::OpenaiCompatible,
        Kind::Gemini,
        Kind::Ollama,
        Kind::Embedded,
    ] {
        assert!(kinds.contains(&k), "{k:?} has no provider file");
    }
}

/// The answer limits: defaults, and the keys that change them; the shipped OpenAI file leaves
/// `maxLength` out of its schema (OpenAI's strict mode refuses the keyword).
#[test]
fn answer_limits_come_from_the_provider_file() {
    let d = parse("kind = \"ollama\"\nmodel = \"m\"\n").unwrap().limits;
    assert_eq!(
        (d.rationale_max_chars, d.schema_max_length, d.max_tokens),
        (600, true, None)
    );
    let c = parse(
        "kind = \"ollama\"\nmodel = \"m\"\nrationale-max-chars = 300\nschema-max-length = false\n\
         max-tokens = 512\n",
    )
    .unwrap()
    .limits;
    assert_eq!(
        (c.rationale_max_chars, c.schema_max_length, c.max_tokens),
        (300, false, Some(512))
    );
    let openai =
        ProviderConfig::load(&common::root().join("configs/providers/openai-gpt-4o-mini.toml"))
            .unwrap();
    assert!(!openai.limits.schema_max_length);
}

#[test]
fn swapping_providers_is_one_line() {
    let base = "model = \"llama3.2\"\nendpoint = \"http://127.0.0.1:11434\"\n";
    let a = parse(&format!("kind = \"ollama\"\n{base}")).unwrap();
    let b = parse(&format!("kind = \"openai-compatible\"\n{base}")).unwrap();
    assert_eq!((a.kind, b.kind), (Kind::Ollama, Kind::OpenaiCompatible));
    assert_eq!(a.output_mode, OutputMode::Goals);
}

/// The embedded kind: without the feature a clear error; with it, the actions mode only and
/// a missing model file named with the way to get it.
#[test]
fn embedded_provider_errors_say_what_to_do() {
    let c =
        parse("kind = \"embedded\"\nmodel = \"no/such/model.gguf\"\noutput-mode = \"actions\"\n")
            .unwrap();
    assert_eq!(c.kind, Kind::Embedded);
    assert!(c.endpoint.is_none());
    let e = build(&c).err().unwrap().to_string();
    if cfg!(feature = "embedded") {
        assert!(
            e.contains("no/such/model.gguf") && e.contains("scripts/fetch-offline-model.sh"),
            "{e}"
        );
        let goals = parse("kind = \"embedded\"\nmodel = \"m.gguf\"\n").unwrap();
        let e = build(&goals).err().unwrap().to_string();
        assert!(e.contains("output-mode") && e.contains("actions"), "{e}");
    } else {
        assert!(e.contains("--features embedded"), "{e}");
    }
    let e = parse("kind = \"embedded\"\n").unwrap_err().to_string();
    assert!(e.contains("model"), "{e}");
}

#[test]
fn bad_files_name_the_field_and_value() {
    for (text, field, value) in [
        ("kind = \"claude-desktop\"\n", "kind", "claude-desktop"),
        ("kind = \"ollama\"\n", "model", "(missing)"),
        (
            "kind = \"openai-compatible\"\nmodel = \"m\"\n",
            "endpoint",
            "(missing)",
        ),
        (
            "kind = \"ollama\"\nmodel = \"m\"\ntimeout-s = -5\n",
            "timeout-s",
            "-5",
        ),
        (
            "kind = \"ollama\"\nmodel = \"m\"\ntemperature = 7.0\n",
            "temperature",
            "7",
        ),
        (
            "kind = \"ollama\"\nmodel = \"m\"\nendpoint = \"ftp://x\"\n",
            "endpoint",
            "ftp://x",
        ),
        (
            // A value that may be the key itself is never echoed.
            "kind = \"gemini\"\nmodel = \"m\"\napi-key-env = \"sk-123 456\"\n",
            "api-key-env",
            "[not shown]",
        ),
        (
            "kind = \"ollama\"\nmodel = \"m\"\nresponse-format = \"xml\"\n",
            "response-format",
            "xml",
        ),
        (
            "kind = \"ollama\"\nmodel = \"m\"\nrationale-max-chars = 10\n",
            "rationale-max-chars",
            "10",
        ),
        (
            "kind = \"ollama\"\nmodel = \"m\"\nmax-tokens = 100000\n",
            "max-tokens",
            "100000",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.contains("p.toml") && e.contains(field) && e.contains(value),
            "{text:?}: {e}"
        );
    }
    let e = parse("kind = \"ollama\"\nmodel = \"m\"\nmodle = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("p.toml") && e.contains("modle"), "{e}");
    let e = parse("kind = \"ollama\"\nmodel = \n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("p.toml"), "{e}");
}

#[test]
fn a_key_in_the_file_or_in_place_of_a_variable_name_is_never_echoed() {
    let key = "sk-proj-AbCdEf0123456789";
    for text in [
        format!("kind = \"openai-compatible\"\nmodel = \"m\"\napi-key = \"{key}\"\n"),
        format!("kind = \"openai-compatible\"\nmodel = \"m\"\nkey=\"{key}\"\n"),
        format!(
            "kind = \"openai-compatible\"\nmodel = \"m\"\nendpoint = \"https://api.openai.com/v1\"\n\
             api-key-env = \"{key}\"\n"
        ),
    ] {
        let e = parse(&text).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("AbCdEf0123456789"), "{text:?}: {shown}");
        assert!(
            shown.contains("p.toml") && shown.contains("api-key-env"),
            "{shown}"
        );
    }
}

#[test]
fn an_unset_key_variable_is_named() {
    let c = parse(
        "kind = \"openai-compatible\"\nmodel = \"m\"\nendpoint = \"https://api.openai.com/v1\"\napi-key-env = \"AUTOPLAN_TEST_UNSET_KEY\"\n",
    )
    .unwrap();
    let e = build(&c).err().unwrap();
    assert!(matches!(e, AdvisorError::MissingKey { .. }));
    assert!(e.to_string().contains("AUTOPLAN_TEST_UNSET_KEY"), "{e}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_after_retries() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = parse(&format!(
        "kind = \"ollama\"\nmodel = \"llama3.2\"\nendpoint = \"http://127.0.0.1:{port}\"\nretries = 1\nbackoff-s = 0.01\ntimeout-s = 2\n"
    ))
    .unwrap();
    let e = build(&c)
        .unwrap()
        .advise(&common::context())
        .await
        .unwrap_err();
    assert!(matches!(e, AdvisorError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}
