//! The committed OpenAPI document (docs/tps-protocol.openapi.json) against the gateway: every
//! documented operation is served, and every answer of a full session (and its errors)
//! validates against the schema the document gives for its status, checked with the
//! `jsonschema` crate (JSON Schema 2020-12, the dialect of OpenAPI 3.1).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use tps_api::Tps;
use tps_api::fake::FakeTps;
use tps_api::protocol::Protocol;
use tps_utps_bridge::gateway::{CaseOpener, Config, Gateway, Limits};

const TOKEN: &str = "schema-test-token";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Fake;

impl CaseOpener for Fake {
    fn name(&self) -> String {
        "fake".into()
    }
    fn open(&self, _: &Path, protocol: Protocol) -> tps_api::Result<Box<dyn Tps>> {
        Ok(Box::new(FakeTps::new(&protocol)?))
    }
}

struct Spec {
    doc: Value,
    checked: BTreeSet<(String, String)>,
}

impl Spec {
    fn load() -> Self {
        let text = std::fs::read_to_string(root().join("docs/tps-protocol.openapi.json")).unwrap();
        Self {
            doc: serde_json::from_str(&text).unwrap(),
            checked: BTreeSet::new(),
        }
    }

    /// Validates `body` against the schema of `method path` for `status` (or `default`).
    fn check(&mut self, method: &str, path: &str, status: u16, body: &Value) {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let responses = &op["responses"];
        let r = responses
            .get(status.to_string())
            .unwrap_or(&responses["default"]);
        let schema_ref = r["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} {status}: no JSON schema"));
        let mut schema = self.doc.clone();
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        schema["$ref"] = json!(schema_ref);
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {body} does not follow {schema_ref}: {errors:?}"
        );
        self.checked.insert((method.into(), path.into()));
    }
}

#[test]
fn every_answer_of_a_session_follows_the_committed_schema() {
    let gw = Gateway::spawn(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Fake),
        Config {
            token: Some(TOKEN.into()),
            patients_root: None,
            limits: Limits::default(),
            server: "schema test".into(),
        },
    )
    .unwrap();
    let http = reqwest::blocking::Client::new();
    let url = gw.url();
    let mut spec = Spec::load();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{url}{path}"))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().unwrap();
        (status, bytes)
    };
    let json_of = |b: &[u8]| -> Value { serde_json::from_slice(b).unwrap() };
    use reqwest::Method;

    let (st, b) = call(Method::GET, "/v1/hello", None);
    spec.check("get", "/v1/hello", st, &json_of(&b));
    // The cervix protocol with one objective of each kind the study's Table 1 lacks, so the
    // objective listing shows every kind the schema documents.
    let protocol = std::fs::read_to_string(root().join("configs/protocols/cervix.toml")).unwrap()
        + "\n[[objectives]]\nid = \"cord-geud\"\nstructure = \"SpinalCord\"\ntype = \"geud\"\n\
           a = 12.0\nweight = 1.0\ngoal-cgy = 2000.0\nideal-range = [1e-4, 1e-2]\n\
           \n[[objectives]]\nid = \"fall-off\"\nstructure = \"External\"\ntype = \"fall-off\"\n\
           end-percent = 30.0\nfall-off-mm = 10.0\nweight = 1.0\ngoal-cgy = 3600.0\n\
           ideal-range = [1e-4, 1e-2]\n";
    let open = json!({
        "patient": {"kind": "upload", "files": [{"path": "patient.toml",
            "base64": base64::engine::general_purpose::STANDARD.encode("id = \"x\"\n")}]},
        "protocol_toml": protocol,
        "protocol_name": "cervix.toml"
    });
    let (st, b) = call(Method::POST, "/v1/cases", Some(open.clone()));
    assert_eq!(st, 201);
    let opened = json_of(&b);
    assert_eq!(
        opened["beams"]["arrangement"]["technique"], "arcs",
        "{opened}"
    );
    spec.check("post", "/v1/cases", st, &opened);
    let case = opened["case"].as_str().unwrap().to_string();
    let at = |op: &str| format!("/v1/cases/{case}/{op}");

    let (st, b) = call(Method::GET, &at("objectives"), None);
    let listed = json_of(&b);
    let kinds: Vec<&str> = listed["objectives"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|o| o["kind"]["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"geud") && kinds.contains(&"fall-off"),
        "{listed}"
    );
    spec.check("get", "/v1/cases/{case}/objectives", st, &listed);
    let optimize = json!({"changes": [{"id": "bladder-mean", "goal_cgy": 2900.0}],
                          "idempotency_key": "k1"});
    let (st, b) = call(Method::POST, &at("optimize"), Some(optimize.clone()));
    assert_eq!(st, 202);
    let job = json_of(&b);
    spec.check("post", "/v1/cases/{case}/optimize", st, &job);
    let job_id = job["job"].as_str().unwrap().to_string();
    let (st, b) = call(Method::GET, &format!("/v1/jobs/{job_id}?wait_s=10"), None);
    let done = json_of(&b);
    assert_eq!(done["state"], "done");
    spec.check("get", "/v1/jobs/{job}", st, &done);
    // The same key again: the same job, done, not a second optimization.
    let (st, b) = call(Method::POST, &at("optimize"), Some(optimize));
    assert_eq!(st, 200);
    assert_eq!(json_of(&b)["job"], job_id.as_str());
    spec.check("post", "/v1/cases/{case}/optimize", st, &json_of(&b));
    // A failed job.
    let bad = json!({"changes": [{"id": "nope", "goal_cgy": 1.0}], "idempotency_key": "k2"});
    let (_, b) = call(Method::POST, &at("optimize"), Some(bad));
    let failed_id = json_of(&b)["job"].as_str().unwrap().to_string();
    let (st, b) = call(
        Method::GET,
        &format!("/v1/jobs/{failed_id}?wait_s=10"),
        None,
    );
    let failed = json_of(&b);
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["code"], "invalid");
    spec.check("get", "/v1/jobs/{job}", st, &failed);

    let (st, b) = call(
        Method::POST,
        &at("normalize"),
        Some(json!({"basis": "dose", "idempotency_key": "n1"})),
    );
    spec.check("post", "/v1/cases/{case}/normalize", st, &json_of(&b));
    let (st, b) = call(Method::GET, &at("report"), None);
    spec.check("get", "/v1/cases/{case}/report", st, &json_of(&b));
    let (st, b) = call(Method::GET, &at("plan"), None);
    spec.check("get", "/v1/cases/{case}/plan", st, &json_of(&b));

    // The dose: its header follows DoseHeader and the values fill the rest.
    let (st, b) = call(Method::GET, &at("dose"), None);
    assert_eq!(st, 200);
    let n = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    let header = json_of(&b[4..4 + n]);
    let mut schema = spec.doc.clone();
    schema["$ref"] = json!("#/components/schemas/DoseHeader");
    assert!(jsonschema::is_valid(&schema, &header), "{header}");
    assert_eq!(
        b.len(),
        4 + n + 4 * header["count"].as_u64().unwrap() as usize
    );
    spec.checked
        .insert(("get".into(), "/v1/cases/{case}/dose".into()));

    // Errors follow the error envelope.
    let (st, b) = call(Method::GET, "/v1/cases/case-none/report", None);
    assert_eq!(st, 404);
    spec.check("get", "/v1/cases/{case}/report", st, &json_of(&b));
    let (st, b) = call(Method::POST, "/v1/cases", Some(json!({"patient": 3})));
    assert_eq!(st, 400);
    spec.check("post", "/v1/cases", st, &json_of(&b));
    let resp = http.get(format!("{url}/v1/hello")).send().unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().unwrap();
    spec.check("get", "/v1/hello", 401, &body);

    let (st, _) = call(Method::DELETE, &format!("/v1/cases/{case}"), None);
    assert_eq!(st, 204);
    spec.checked
        .insert(("delete".into(), "/v1/cases/{case}".into()));

    // Every documented operation was exercised.
    let mut documented = BTreeSet::new();
    for (path, ops) in spec.doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(documented, spec.checked);
}
