//! [`RemoteTps`]: the `Tps` trait over protocol v1, for a TPS in another process or on
//! another machine.
//!
//! Every HTTP call has its own timeout; a temporary failure (no connection, a timeout, a busy
//! or overloaded server: any error whose body says `temporary`) is retried with doubling,
//! jittered waits, and one TPS operation (an optimization with its job polls included) stops
//! at the total time limit. Optimizations and normalizations carry an idempotency key that
//! stays the same across the retries of one operation, so a request the server received but
//! whose answer was lost is not carried out twice.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use reqwest::blocking::{Client, Response};
use serde::de::DeserializeOwned;
use tps_api::objectives::Objective;
use tps_api::report::{GoalChange, IterationReport, PlanSummary};
use tps_api::{Dose, Error, Normalization, Result, Tps};

use crate::config::{PatientTransfer, RemoteConfig};
use crate::wire::{
    ErrorEnvelope, Hello, Job, JobState, Normalize, Normalized, Objectives, OpenCase, Opened,
    Optimize, PROTOCOL, PatientSource, UploadFile, VERSION, decode_dose,
};

/// A case open on a remote TPS; closed when dropped.
pub struct RemoteTps {
    http: Client,
    base: String,
    token: Option<String>,
    config: RemoteConfig,
    case: String,
    name: String,
    beams: Option<tps_api::Beams>,
}

/// A failed attempt: the error, and whether another attempt may help.
fn transport(base: &str, e: &reqwest::Error) -> Error {
    let (code, what) = if e.is_timeout() {
        ("timeout", "no answer in time")
    } else if e.is_connect() {
        ("unreachable", "cannot connect")
    } else {
        ("transport", "the connection failed")
    };
    // reqwest's message names the URL, never a header.
    Error::backend(base, code, format!("{what}: {e}"), true)
}

/// The first 200 characters of an answer, quoted, for errors.
fn excerpt(bytes: &[u8]) -> String {
    format!(
        "{:?}",
        String::from_utf8_lossy(bytes)
            .chars()
            .take(200)
            .collect::<String>()
    )
}

/// A fresh idempotency key.
fn key() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl RemoteTps {
    /// Connects to the server of `config` (checking that it speaks protocol v1) and opens a
    /// case on the patient directory `patient` with the protocol file `protocol`.
    pub fn open(config: &RemoteConfig, patient: &Path, protocol: &Path) -> Result<Self> {
        let token = config.token()?;
        let http = Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::backend(&config.endpoint, "client", e.to_string(), false))?;
        let mut tps = Self {
            http,
            base: config.endpoint.trim_end_matches('/').to_string(),
            token,
            config: config.clone(),
            case: String::new(),
            name: String::new(),
            beams: None,
        };
        let hello: Hello = tps.json(Method::GET, "/v1/hello", None)?;
        if hello.protocol != PROTOCOL || !hello.versions.contains(&VERSION) {
            return Err(Error::backend(
                &tps.base,
                "unsupported-version",
                format!(
                    "the server speaks {} versions {:?}; this client speaks {PROTOCOL} {VERSION}",
                    hello.protocol, hello.versions
                ),
                false,
            ));
        }
        let protocol_toml =
            std::fs::read_to_string(protocol).map_err(|e| Error::io(protocol, e))?;
        let source = match &config.patient {
            PatientTransfer::Upload => PatientSource::Upload {
                files: upload_files(patient)?,
            },
            PatientTransfer::Path { root } => PatientSource::Path {
                path: relative_to(patient, root, &config.origin)?,
            },
        };
        let body = serde_json::to_value(OpenCase {
            patient: source,
            protocol_toml,
            protocol_name: protocol
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
        })
        .expect("an open request serializes");
        let opened: Opened = tps.json(Method::POST, "/v1/cases", Some(&body))?;
        tps.name = format!("{} at {}", opened.tps, tps.base);
        tps.case = opened.case;
        tps.beams = opened.beams;
        Ok(tps)
    }

    /// The case id on the server.
    pub fn case(&self) -> &str {
        &self.case
    }

    /// One HTTP exchange, retried while it fails temporarily and time is left.
    fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response> {
        let start = Instant::now();
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let e = match req.send() {
                Err(e) => transport(&self.base, &e),
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => self.error_of(resp),
            };
            attempt += 1;
            let wait = self
                .config
                .backoff
                .mul_f64(2f64.powi(attempt as i32 - 1))
                .min(Duration::from_secs(30))
                .mul_f64(0.5 + fastrand::f64());
            let out_of_time = start.elapsed() + wait > self.config.total_limit;
            if !e.is_temporary() || attempt > self.config.retries || out_of_time {
                return Err(e);
            }
            tracing::warn!("{url}: {e}; retrying in {:.1} s", wait.as_secs_f64());
            std::thread::sleep(wait);
        }
    }

    /// The error an answer that is not a success carries.
    fn error_of(&self, resp: Response) -> Error {
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(env) => env.error.into_error(&self.base),
            Err(_) => Error::backend(
                &self.base,
                format!("http-{}", status.as_u16()),
                format!(
                    "HTTP {status} without a protocol error body: {}",
                    excerpt(text.as_bytes())
                ),
                status.is_server_error() || status.as_u16() == 429,
            ),
        }
    }

    /// A JSON exchange.
    fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let bytes = self.body(method, path, body)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::backend(
                &self.base,
                "bad-response",
                format!(
                    "{path}: the answer is not the protocol's ({e}): {}",
                    excerpt(&bytes)
                ),
                false,
            )
        })
    }

    /// The whole body of an exchange; one that stops early is an error, never a value.
    fn body(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<bytes::Bytes> {
        self.exchange(method, path, body)?.bytes().map_err(|e| {
            Error::backend(
                &self.base,
                "bad-response",
                format!("{path}: the answer was cut short: {e}"),
                true,
            )
        })
    }

    fn case_path(&self, op: &str) -> String {
        format!("/v1/cases/{}/{op}", self.case)
    }
}

/// Every file under `dir`, for an upload.
fn upload_files(dir: &Path) -> Result<Vec<UploadFile>> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "patient directory does not exist",
            ),
        ));
    }
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                let rel = path.strip_prefix(dir).expect("under the directory");
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                files.push(UploadFile {
                    path: rel.join("/"),
                    base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// `patient` relative to `root`, `/`-separated.
fn relative_to(patient: &Path, root: &Path, origin: &Path) -> Result<String> {
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| Error::io(p, e));
    let (p, r): (PathBuf, PathBuf) = (canon(patient)?, canon(root)?);
    let rel = p.strip_prefix(&r).map_err(|_| {
        Error::invalid(
            origin.display().to_string(),
            "patient.root",
            root.display().to_string(),
            format!("the patient {} is not under it", patient.display()),
        )
    })?;
    Ok(rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/"))
}

impl Tps for RemoteTps {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn objectives(&self) -> Result<Vec<Objective>> {
        let o: Objectives = self.json(Method::GET, &self.case_path("objectives"), None)?;
        Ok(o.objectives)
    }

    fn optimize(&mut self, goals: &[GoalChange]) -> Result<IterationReport> {
        let start = Instant::now();
        let body = serde_json::to_value(Optimize {
            changes: goals.to_vec(),
            idempotency_key: key(),
        })
        .expect("an optimize request serializes");
        let mut job: Job = self.json(Method::POST, &self.case_path("optimize"), Some(&body))?;
        while job.state == JobState::Running {
            let left = self.config.total_limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::backend(
                    &self.base,
                    "timeout",
                    format!(
                        "job {} still running after the total limit of {} s",
                        job.job,
                        self.config.total_limit.as_secs()
                    ),
                    true,
                ));
            }
            // A poll waits on the server for at most `poll`, well inside the call timeout.
            let wait = self
                .config
                .poll
                .min(left)
                .min(self.config.timeout.mul_f64(0.8));
            job = self.json(
                Method::GET,
                &format!("/v1/jobs/{}?wait_s={:.3}", job.job, wait.as_secs_f64()),
                None,
            )?;
        }
        match (job.state, job.report, job.error) {
            (JobState::Done, Some(r), _) => Ok(r),
            (JobState::Failed, _, Some(e)) => Err(e.into_error(&self.base)),
            (state, ..) => Err(Error::backend(
                &self.base,
                "bad-response",
                format!("job {} is {state:?} without its report or error", job.job),
                false,
            )),
        }
    }

    fn normalize(&mut self, basis: Normalization) -> Result<f64> {
        let body = serde_json::to_value(Normalize {
            basis,
            idempotency_key: key(),
        })
        .expect("a normalize request serializes");
        let n: Normalized = self.json(Method::POST, &self.case_path("normalize"), Some(&body))?;
        Ok(n.factor)
    }

    fn report(&self) -> Result<IterationReport> {
        self.json(Method::GET, &self.case_path("report"), None)
    }

    fn dose(&self) -> Result<Dose> {
        let bytes = self.body(Method::GET, &self.case_path("dose"), None)?;
        decode_dose(&bytes, &self.base)
    }

    fn plan(&self) -> Result<PlanSummary> {
        self.json(Method::GET, &self.case_path("plan"), None)
    }

    fn beams(&self) -> Option<tps_api::Beams> {
        self.beams.clone()
    }
}

impl Drop for RemoteTps {
    fn drop(&mut self) {
        if self.case.is_empty() {
            return;
        }
        let mut req = self
            .http
            .delete(format!("{}/v1/cases/{}", self.base, self.case))
            .timeout(Duration::from_secs(5));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Err(e) = req.send() {
            tracing::warn!("closing case {} at {}: {e}", self.case, self.base);
        }
    }
}
