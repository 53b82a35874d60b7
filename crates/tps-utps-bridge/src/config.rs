//! TPS files (`configs/tps/*.toml`): which TPS a plan is made with.
//!
//! ```toml
//! kind = "remote"                  # native | remote
//! endpoint = "http://127.0.0.1:8787"
//! token-env = "AUTOPLAN_TPS_TOKEN" # the variable's name, never the token; omit for none
//! patient = "upload"               # upload | path (then patients-root = "...")
//! timeout-s = 60                   # one HTTP call
//! retries = 3                      # on temporary errors
//! backoff-s = 0.5                  # first wait, doubled per retry, with jitter
//! total-limit-s = 3600             # one TPS operation, job polls included
//! poll-s = 10                      # longest wait of one job poll on the server
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tps_api::error::{Error, Result, read_toml};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Wire {
    kind: String,
    endpoint: Option<String>,
    token_env: Option<String>,
    patient: Option<String>,
    patients_root: Option<PathBuf>,
    timeout_s: Option<f64>,
    retries: Option<u32>,
    backoff_s: Option<f64>,
    total_limit_s: Option<f64>,
    poll_s: Option<f64>,
}

/// How the patient reaches a remote TPS.
#[derive(Debug, Clone, PartialEq)]
pub enum PatientTransfer {
    /// Its files are sent with the request that opens the case.
    Upload,
    /// The server reads it: the patient directory lies under `root` here, and the server is
    /// given its path relative to that (the server's own patient root holds the same tree).
    Path {
        /// The local directory matching the server's patient root.
        root: PathBuf,
    },
}

/// A remote TPS speaking protocol v1.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteConfig {
    /// The file it was read from.
    pub origin: PathBuf,
    /// Base URL (without `/v1`).
    pub endpoint: String,
    /// Name of the environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// How the patient is sent.
    pub patient: PatientTransfer,
    /// Timeout of one HTTP call.
    pub timeout: Duration,
    /// Retries of a temporary failure.
    pub retries: u32,
    /// First wait between retries.
    pub backoff: Duration,
    /// Limit on one TPS operation, retries and job polls included.
    pub total_limit: Duration,
    /// Longest wait of one job poll.
    pub poll: Duration,
}

impl RemoteConfig {
    /// The token from its variable (`None` without `token-env`); an unset variable is an error
    /// naming it.
    pub fn token(&self) -> Result<Option<String>> {
        let Some(var) = &self.token_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            _ => Err(Error::invalid(
                self.origin.display().to_string(),
                "token-env",
                var.clone(),
                format!("set the environment variable {var} to the gateway's token"),
            )),
        }
    }
}

/// A checked TPS file.
#[derive(Debug, Clone, PartialEq)]
pub enum TpsConfig {
    /// The native TPS, in-process.
    Native,
    /// A TPS behind protocol v1.
    Remote(RemoteConfig),
}

impl TpsConfig {
    /// Reads and checks a TPS file.
    pub fn load(path: &Path) -> Result<Self> {
        let w: Wire = read_toml(path)?;
        let origin = path.display().to_string();
        let bad = |f: &str, v: String, why: &str| Err(Error::invalid(&origin, f, v, why));
        match w.kind.as_str() {
            "native" => {
                if let Some(e) = &w.endpoint {
                    return bad("endpoint", e.clone(), "the native TPS runs in-process");
                }
                Ok(Self::Native)
            }
            "remote" => {
                let Some(endpoint) = w.endpoint else {
                    return bad("endpoint", "(missing)".into(), "a remote TPS needs its URL");
                };
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return bad("endpoint", endpoint, "expected an http:// or https:// URL");
                }
                if let Some(t) = &w.token_env
                    && (t.starts_with("Bearer") || t.len() > 64 || t.contains(char::is_whitespace))
                {
                    return bad(
                        "token-env",
                        "(hidden)".into(),
                        "name the environment variable holding the token, not the token",
                    );
                }
                let seconds = |f: &str, v: Option<f64>, default: f64, max: f64| {
                    let v = v.unwrap_or(default);
                    if v > 0.0 && v <= max {
                        Ok(Duration::from_secs_f64(v))
                    } else {
                        Err(Error::invalid(
                            &origin,
                            f,
                            v.to_string(),
                            format!("must be above 0 and at most {max} seconds"),
                        ))
                    }
                };
                let patient = match (w.patient.as_deref(), w.patients_root) {
                    (None | Some("upload"), None) => PatientTransfer::Upload,
                    (Some("path"), Some(root)) => PatientTransfer::Path { root },
                    (Some("path"), None) => {
                        return bad(
                            "patients-root",
                            "(missing)".into(),
                            "patient = \"path\" needs the local directory matching the \
                             server's patient root",
                        );
                    }
                    (None | Some("upload"), Some(r)) => {
                        return bad(
                            "patients-root",
                            r.display().to_string(),
                            "only used with patient = \"path\"",
                        );
                    }
                    (Some(other), _) => {
                        return bad("patient", other.into(), "expected \"upload\" or \"path\"");
                    }
                };
                let retries = w.retries.unwrap_or(3);
                if retries > 10 {
                    return bad("retries", retries.to_string(), "at most 10");
                }
                let backoff = match w.backoff_s {
                    Some(b) if !(0.0..=60.0).contains(&b) => {
                        return bad("backoff-s", b.to_string(), "must be 0 to 60 seconds");
                    }
                    b => Duration::from_secs_f64(b.unwrap_or(0.5)),
                };
                Ok(Self::Remote(RemoteConfig {
                    origin: path.to_path_buf(),
                    endpoint,
                    token_env: w.token_env,
                    patient,
                    timeout: seconds("timeout-s", w.timeout_s, 60.0, 3600.0)?,
                    retries,
                    backoff,
                    total_limit: seconds("total-limit-s", w.total_limit_s, 3600.0, 86_400.0)?,
                    poll: seconds("poll-s", w.poll_s, 10.0, 600.0)?,
                }))
            }
            other => bad(
                "kind",
                format!("{other:?}"),
                "expected \"native\" or \"remote\"",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<TpsConfig> {
        let dir = std::env::temp_dir().join(format!("bridge-config-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.toml");
        std::fs::write(&path, text).unwrap();
        let c = TpsConfig::load(&path);
        std::fs::remove_dir_all(dir).unwrap();
        c
    }

    #[test]
    fn shipped_files_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tps");
        assert_eq!(
            TpsConfig::load(&root.join("native.toml")).unwrap(),
            TpsConfig::Native
        );
        let TpsConfig::Remote(r) = TpsConfig::load(&root.join("local-gateway.toml")).unwrap()
        else {
            panic!("remote")
        };
        assert_eq!(r.endpoint, "http://127.0.0.1:8787");
        assert_eq!(r.patient, PatientTransfer::Upload);
    }

    #[test]
    fn bad_files_name_the_field_and_value() {
        for (text, field) in [
            ("kind = \"cloud\"", "kind"),
            ("kind = \"remote\"", "endpoint"),
            ("kind = \"remote\"\nendpoint = \"ftp://x\"", "endpoint"),
            (
                "kind = \"remote\"\nendpoint = \"http://x\"\ntimeout-s = 0",
                "timeout-s",
            ),
            (
                "kind = \"remote\"\nendpoint = \"http://x\"\nretries = 99",
                "retries",
            ),
            (
                "kind = \"remote\"\nendpoint = \"http://x\"\npatient = \"path\"",
                "patients-root",
            ),
            (
                "kind = \"remote\"\nendpoint = \"http://x\"\npatient = \"ftp\"",
                "patient",
            ),
            ("kind = \"native\"\nendpoint = \"http://x\"", "endpoint"),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains("t.toml") && e.contains(field), "{text}: {e}");
        }
        let e = load("kind = \"remote\"\nendpoint = \"http://x\"\nwait = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wait"), "{e}");
    }

    #[test]
    fn a_token_written_as_the_variable_is_refused_without_showing_it() {
        let e = load(
            "kind = \"remote\"\nendpoint = \"http://x\"\ntoken-env = \"Bearer s3cr3t-0123456789\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("token-env") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn an_unset_token_variable_is_named() {
        let TpsConfig::Remote(r) = load(
            "kind = \"remote\"\nendpoint = \"http://x\"\ntoken-env = \"AUTOPLAN_TEST_UNSET_TOKEN\"",
        )
        .unwrap() else {
            panic!("remote")
        };
        let e = r.token().unwrap_err().to_string();
        assert!(e.contains("AUTOPLAN_TEST_UNSET_TOKEN"), "{e}");
    }
}
