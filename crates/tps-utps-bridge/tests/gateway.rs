//! Client and gateway together on 127.0.0.1: the conformance suite through the protocol, and
//! the faults a remote TPS brings (a wrong token, a failed optimization, an expired case, a
//! version the server does not speak, busy and full servers, a server that is gone).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tps_api::conformance::{Expectations, check_all};
use tps_api::fake::FakeTps;
use tps_api::protocol::Protocol;
use tps_api::{Normalization, Tps};
use tps_utps_bridge::RemoteTps;
use tps_utps_bridge::config::{PatientTransfer, RemoteConfig};
use tps_utps_bridge::gateway::{CaseOpener, Config, Gateway, Limits};

const TOKEN_VAR: &str = "AUTOPLAN_BRIDGE_TEST_TOKEN";
const TOKEN: &str = "bridge-test-token-0123456789";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn protocol_path() -> PathBuf {
    root().join("configs/protocols/cervix.toml")
}

/// Opens `FakeTps` cases, checking the patient directory arrived; the `n`th optimization of
/// every case fails when `fail_at` says so.
struct FakeOpener {
    fail_at: Option<(u32, bool)>,
    opened: AtomicU32,
}

impl CaseOpener for FakeOpener {
    fn name(&self) -> String {
        "fake".into()
    }

    fn open(&self, patient: &Path, protocol: Protocol) -> tps_api::Result<Box<dyn Tps>> {
        let manifest = patient.join("patient.toml");
        let text =
            std::fs::read_to_string(&manifest).map_err(|e| tps_api::Error::io(&manifest, e))?;
        assert!(text.contains("id = \"fake/p01\""), "{text}");
        assert!(patient.join("structures/PTV.nrrd").is_file());
        self.opened.fetch_add(1, Ordering::SeqCst);
        let tps = FakeTps::new(&protocol)?;
        Ok(Box::new(match self.fail_at {
            Some((n, temporary)) => tps.failing_at(n, temporary),
            None => tps,
        }))
    }
}

/// A patient directory the fake opener accepts.
fn patient_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("patient.toml"), "id = \"fake/p01\"\n").unwrap();
    std::fs::create_dir(dir.path().join("structures")).unwrap();
    std::fs::write(dir.path().join("structures/PTV.nrrd"), [0u8, 1, 2, 255]).unwrap();
    dir
}

fn gateway(fail_at: Option<(u32, bool)>, limits: Limits) -> Gateway {
    let opener = Arc::new(FakeOpener {
        fail_at,
        opened: AtomicU32::new(0),
    });
    Gateway::spawn(
        "127.0.0.1:0".parse().unwrap(),
        opener,
        Config {
            token: Some(TOKEN.into()),
            patients_root: None,
            limits,
            server: "bridge test".into(),
        },
    )
    .unwrap()
}

fn client_config(url: &str) -> RemoteConfig {
    // SAFETY: every test sets the same value; no test reads another variable concurrently.
    unsafe { std::env::set_var(TOKEN_VAR, TOKEN) };
    RemoteConfig {
        origin: "test.toml".into(),
        endpoint: url.into(),
        token_env: Some(TOKEN_VAR.into()),
        patient: PatientTransfer::Upload,
        timeout: Duration::from_secs(10),
        retries: 2,
        backoff: Duration::from_millis(20),
        total_limit: Duration::from_secs(30),
        poll: Duration::from_secs(2),
    }
}

#[test]
fn the_fake_tps_conforms_through_the_protocol() {
    let gw = gateway(None, Limits::default());
    let config = client_config(&gw.url());
    let patient = patient_dir();
    let expect = Expectations::of_fake_tps(&Protocol::load(&protocol_path()).unwrap());
    assert_eq!(expect.prescription_cgy, 3600.0);
    check_all(
        &mut || Box::new(RemoteTps::open(&config, patient.path(), &protocol_path()).unwrap()),
        &expect,
    );
}

#[test]
fn the_remote_case_gives_what_the_tps_gives_in_process() {
    let gw = gateway(None, Limits::default());
    let patient = patient_dir();
    let mut remote =
        RemoteTps::open(&client_config(&gw.url()), patient.path(), &protocol_path()).unwrap();
    let mut local = FakeTps::new(&Protocol::load(&protocol_path()).unwrap()).unwrap();
    assert!(remote.name().starts_with("fake at http://127.0.0.1:"));
    assert_eq!(remote.objectives().unwrap(), local.objectives().unwrap());
    let changes = [tps_api::GoalChange {
        id: "bladder-mean".into(),
        goal_cgy: 2800.0,
    }];
    assert_eq!(
        remote.optimize(&changes).unwrap(),
        local.optimize(&changes).unwrap()
    );
    assert_eq!(
        remote.normalize(Normalization::Dose).unwrap(),
        local.normalize(Normalization::Dose).unwrap()
    );
    assert_eq!(remote.report().unwrap(), local.report().unwrap());
    assert_eq!(remote.dose().unwrap(), local.dose().unwrap());
    assert_eq!(remote.plan().unwrap(), local.plan().unwrap());
}

#[test]
fn a_wrong_or_missing_token_is_refused_with_a_clear_message() {
    let gw = gateway(None, Limits::default());
    let mut config = client_config(&gw.url());
    config.token_env = Some("AUTOPLAN_BRIDGE_TEST_WRONG_TOKEN".into());
    unsafe { std::env::set_var("AUTOPLAN_BRIDGE_TEST_WRONG_TOKEN", "not-the-token") };
    let e = RemoteTps::open(&config, patient_dir().path(), &protocol_path())
        .err()
        .unwrap();
    assert!(!e.is_temporary());
    let e = e.to_string();
    assert!(
        e.contains("unauthorized") && e.contains("not this server's"),
        "{e}"
    );
    assert!(!e.contains("not-the-token") && !e.contains(TOKEN), "{e}");
    config.token_env = None;
    let e = RemoteTps::open(&config, patient_dir().path(), &protocol_path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("Authorization: Bearer"), "{e}");
}

#[test]
fn a_failed_optimization_keeps_the_plan_and_says_whether_to_retry() {
    let gw = gateway(Some((2, false)), Limits::default());
    let patient = patient_dir();
    let mut tps =
        RemoteTps::open(&client_config(&gw.url()), patient.path(), &protocol_path()).unwrap();
    let first = tps.optimize(&[]).unwrap();
    let e = tps.optimize(&[]).unwrap_err();
    assert!(!e.is_temporary(), "{e}");
    // The plan of the first optimization is still there.
    assert_eq!(tps.report().unwrap().total_objective, first.total_objective);
}

#[test]
fn an_unknown_goal_is_refused_and_the_case_stays_usable() {
    let gw = gateway(None, Limits::default());
    let patient = patient_dir();
    let mut tps =
        RemoteTps::open(&client_config(&gw.url()), patient.path(), &protocol_path()).unwrap();
    let e = tps
        .optimize(&[tps_api::GoalChange {
            id: "kidney-mean".into(),
            goal_cgy: 100.0,
        }])
        .unwrap_err()
        .to_string();
    assert!(e.contains("kidney-mean"), "{e}");
    tps.optimize(&[]).unwrap();
}

#[test]
fn an_idle_case_expires_and_says_so() {
    let gw = gateway(
        None,
        Limits {
            idle: Duration::from_millis(200),
            ..Limits::default()
        },
    );
    let patient = patient_dir();
    let tps = RemoteTps::open(&client_config(&gw.url()), patient.path(), &protocol_path()).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let e = tps.report().unwrap_err();
    assert!(!e.is_temporary());
    let e = e.to_string();
    assert!(
        e.contains("case-expired") && e.contains("open it again"),
        "{e}"
    );
}

#[test]
fn a_full_server_says_so_and_a_closed_case_frees_its_place() {
    let gw = gateway(
        None,
        Limits {
            max_cases: 1,
            ..Limits::default()
        },
    );
    let mut config = client_config(&gw.url());
    config.retries = 0;
    let patient = patient_dir();
    let first = RemoteTps::open(&config, patient.path(), &protocol_path()).unwrap();
    let e = RemoteTps::open(&config, patient.path(), &protocol_path())
        .err()
        .unwrap();
    assert!(e.is_temporary(), "{e}");
    assert!(e.to_string().contains("too-many-cases"), "{e}");
    drop(first);
    RemoteTps::open(&config, patient.path(), &protocol_path()).unwrap();
}

#[test]
fn an_oversized_upload_is_refused_with_the_limit() {
    let gw = gateway(
        None,
        Limits {
            max_body_bytes: 1000,
            ..Limits::default()
        },
    );
    let e = RemoteTps::open(
        &client_config(&gw.url()),
        patient_dir().path(),
        &protocol_path(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("too-large") && e.contains("1000 bytes"), "{e}");
}

#[test]
fn a_server_that_is_gone_is_a_temporary_error_after_the_retries() {
    let gw = gateway(None, Limits::default());
    let url = gw.url();
    drop(gw);
    let e = RemoteTps::open(&client_config(&url), patient_dir().path(), &protocol_path())
        .err()
        .unwrap();
    assert!(e.is_temporary());
    assert!(e.to_string().contains("unreachable"), "{e}");
}

#[test]
fn a_path_outside_the_protocol_version_names_the_version() {
    let gw = gateway(None, Limits::default());
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/v2/hello", gw.url()))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "unsupported-version");
    assert_eq!(body["error"]["temporary"], false);
}

#[test]
fn a_patient_is_opened_by_path_under_the_servers_patient_root_only() {
    let patients = tempfile::tempdir().unwrap();
    let patient = patients.path().join("p01");
    std::fs::create_dir_all(patient.join("structures")).unwrap();
    std::fs::write(patient.join("patient.toml"), "id = \"fake/p01\"\n").unwrap();
    std::fs::write(patient.join("structures/PTV.nrrd"), [1u8]).unwrap();
    let gw = Gateway::spawn(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(FakeOpener {
            fail_at: None,
            opened: AtomicU32::new(0),
        }),
        Config {
            token: Some(TOKEN.into()),
            patients_root: Some(patients.path().to_path_buf()),
            limits: Limits::default(),
            server: "bridge test".into(),
        },
    )
    .unwrap();
    let mut config = client_config(&gw.url());
    config.patient = PatientTransfer::Path {
        root: patients.path().to_path_buf(),
    };
    let mut tps = RemoteTps::open(&config, &patient, &protocol_path()).unwrap();
    tps.optimize(&[]).unwrap();
    // A patient outside the root is refused here, before anything is sent.
    let elsewhere = patient_dir();
    let e = RemoteTps::open(&config, elsewhere.path(), &protocol_path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("patient.root") && e.contains("not under it"),
        "{e}"
    );
    // A server without a patient root refuses paths.
    let plain = gateway(None, Limits::default());
    config.endpoint = plain.url();
    let e = RemoteTps::open(&config, &patient, &protocol_path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("path-not-served"), "{e}");
}

#[test]
fn the_jobs_of_a_closed_case_are_forgotten() {
    let gw = gateway(None, Limits::default());
    let tps = RemoteTps::open(
        &client_config(&gw.url()),
        patient_dir().path(),
        &protocol_path(),
    )
    .unwrap();
    let http = reqwest::blocking::Client::new();
    let job: serde_json::Value = http
        .post(format!("{}/v1/cases/{}/optimize", gw.url(), tps.case()))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"changes": [], "idempotency_key": "k"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let url = format!(
        "{}/v1/jobs/{}?wait_s=5",
        gw.url(),
        job["job"].as_str().unwrap()
    );
    let poll = || http.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(poll().status(), 200);
    drop(tps);
    let gone = poll();
    assert_eq!(gone.status(), 404);
    let body: serde_json::Value = gone.json().unwrap();
    assert_eq!(body["error"]["code"], "unknown-job");
}
