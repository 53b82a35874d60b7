//! The gateway: serves any [`Tps`] over protocol v1 (docs/tps-protocol.md).
//!
//! Each case is one `Box<dyn Tps>` opened by a [`CaseOpener`] on a patient directory (one the
//! server may read under its patient root, or an upload unpacked into a private temporary
//! directory). TPS calls run on blocking threads; an optimization is a job the client polls or
//! waits on, keyed by the client's idempotency key so a retried request never optimizes twice.
//! Every request needs the bearer token unless the gateway was started without one; the token
//! is compared in constant time and never logged. Limits: request body size, concurrent cases,
//! idle-case lifetime (an idle case is closed and later calls on it say it expired) and the
//! longest wait of a job poll.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use tokio::sync::watch;
use tps_api::protocol::Protocol;
use tps_api::{Error, Tps};

use crate::wire::{
    DOSE_MEDIA_TYPE, ErrorBody, ErrorEnvelope, Hello, Job, JobState, Normalize, Normalized,
    Objectives, OpenCase, Opened, Optimize, PROTOCOL, PatientSource, VERSION, encode_dose,
};

/// Opens cases for the gateway: the TPS it serves.
pub trait CaseOpener: Send + Sync + 'static {
    /// The TPS's name, e.g. `native`.
    fn name(&self) -> String;
    /// Opens a case on the patient directory `patient` with `protocol`.
    fn open(&self, patient: &Path, protocol: Protocol) -> tps_api::Result<Box<dyn Tps>>;
}

/// What the gateway allows.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (an uploaded patient), bytes.
    pub max_body_bytes: usize,
    /// Most cases open (or opening) at once.
    pub max_cases: usize,
    /// A case idle this long is closed.
    pub idle: Duration,
    /// Longest a job poll waits.
    pub max_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 512 << 20,
            max_cases: 4,
            idle: Duration::from_secs(1800),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// How the gateway runs.
#[derive(Clone)]
pub struct Config {
    /// The bearer token every request must carry; `None` serves without one (local use only,
    /// said at start).
    pub token: Option<String>,
    /// Directory under which `path` patients may be read; `None` allows uploads only.
    pub patients_root: Option<PathBuf>,
    /// The limits.
    pub limits: Limits,
    /// The server's name in `hello`, e.g. `autoplan 0.1.0`.
    pub server: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("patients_root", &self.patients_root)
            .field("limits", &self.limits)
            .field("server", &self.server)
            .finish()
    }
}

/// An error answer: status and body.
struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>, temporary: bool) -> Self {
        Self(
            status,
            ErrorBody {
                code: code.into(),
                message: message.into(),
                temporary,
            },
        )
    }

    /// The answer for an error of the TPS or of the input.
    fn of(e: &Error) -> Self {
        let body = ErrorBody::of(e);
        let status = match body.code.as_str() {
            "invalid" | "unknown-structure" | "empty-structure" | "corrupt" | "grid-mismatch"
            | "io" => StatusCode::BAD_REQUEST,
            _ if body.temporary => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(ErrorEnvelope { error: self.1 })).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// A directory holding an uploaded patient, removed with the case.
struct UploadDir(PathBuf);

impl Drop for UploadDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One open case.
struct Case {
    tps: Mutex<Box<dyn Tps>>,
    /// The beams the TPS plans the case with, as it reported them when the case opened.
    beams: Option<tps_api::Beams>,
    /// Set while a job optimizes; every other call on the case is then `busy`.
    optimizing: AtomicBool,
    name: String,
    last_used: Mutex<Instant>,
    /// Idempotency key -> job id.
    jobs: Mutex<HashMap<String, String>>,
    /// Idempotency key -> normalization factor.
    normalized: Mutex<HashMap<String, f64>>,
    _upload: Option<UploadDir>,
}

impl Case {
    fn touch(&self) {
        *self.last_used.lock().expect("clock lock") = Instant::now();
    }

    /// The TPS (a call that panicked inside it leaves it usable: the TPS keeps its last good
    /// plan on error).
    fn lock(&self) -> MutexGuard<'_, Box<dyn Tps>> {
        self.tps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn busy(&self) -> bool {
        self.optimizing.load(Ordering::Acquire)
    }
}

fn busy(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "busy",
        format!("the case is optimizing; {what} when its job ends"),
        true,
    )
}

struct AppState {
    opener: Arc<dyn CaseOpener>,
    config: Config,
    cases: Mutex<HashMap<String, Arc<Case>>>,
    /// Cases being opened (they count against the limit).
    opening: Mutex<usize>,
    expired: Mutex<HashSet<String>>,
    jobs: Mutex<HashMap<String, watch::Receiver<Job>>>,
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

impl AppState {
    fn case(&self, id: &str) -> ApiResult<Arc<Case>> {
        if let Some(c) = self.cases.lock().expect("cases lock").get(id) {
            c.touch();
            return Ok(c.clone());
        }
        if self.expired.lock().expect("expired lock").contains(id) {
            return Err(ApiError::new(
                StatusCode::GONE,
                "case-expired",
                format!(
                    "case {id} was closed after {} s idle; open it again",
                    self.config.limits.idle.as_secs()
                ),
                false,
            ));
        }
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-case",
            format!("no case {id} (closed, or never opened on this server)"),
            false,
        ))
    }

    /// Drops the jobs of a closed case.
    fn forget_jobs(&self, case: &str) {
        self.jobs
            .lock()
            .expect("jobs lock")
            .retain(|_, rx| rx.borrow().case != case);
    }

    /// Closes the cases idle past the limit that are not optimizing.
    fn close_idle(&self) {
        let limit = self.config.limits.idle;
        let mut cases = self.cases.lock().expect("cases lock");
        let idle: Vec<String> = cases
            .iter()
            .filter(|(_, c)| c.last_used.lock().expect("clock lock").elapsed() > limit && !c.busy())
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            cases.remove(&id);
            self.forget_jobs(&id);
            tracing::info!("case {id} closed after {} s idle", limit.as_secs());
            self.expired.lock().expect("expired lock").insert(id);
        }
    }
}

/// Runs `f` on the case's TPS on a blocking thread; a case that is optimizing is busy.
async fn with_tps<T: Send + 'static>(
    case: Arc<Case>,
    f: impl FnOnce(&mut dyn Tps) -> tps_api::Result<T> + Send + 'static,
) -> ApiResult<T> {
    if case.busy() {
        return Err(busy("ask again"));
    }
    tokio::task::spawn_blocking(move || {
        let out = f(case.lock().as_mut()).map_err(|e| ApiError::of(&e));
        case.touch();
        out
    })
    .await
    .map_err(join_failed("the TPS call"))?
}

/// The answer when a blocking task of `what` could not finish (it panicked).
fn join_failed(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> ApiError {
    move |e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what} failed: {e}"),
            false,
        )
    }
}

fn json_body<T: serde::de::DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
    limit: usize,
) -> ApiResult<T> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("request body over the limit of {limit} bytes"),
                false,
            )
        } else {
            ApiError::new(e.status(), "bad-request", e.body_text(), false)
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("request body: {e}"),
            false,
        )
    })
}

async fn hello(State(s): State<Arc<AppState>>) -> axum::Json<Hello> {
    axum::Json(Hello {
        protocol: PROTOCOL.into(),
        versions: vec![VERSION],
        server: s.config.server.clone(),
        tps: s.opener.name(),
    })
}

/// A relative path inside a patient directory, or an error naming it.
fn inside(rel: &str) -> ApiResult<PathBuf> {
    let p = Path::new(rel);
    let ok = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("patient file path {rel:?} must be relative, without `..`"),
            false,
        ));
    }
    Ok(p.to_path_buf())
}

/// The patient directory of `source`: a path under the patient root, or the upload unpacked.
fn patient_dir(s: &AppState, source: PatientSource) -> ApiResult<(PathBuf, Option<UploadDir>)> {
    match source {
        PatientSource::Path { path } => {
            let Some(root) = &s.config.patients_root else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "path-not-served",
                    "this server reads no patient paths (started without a patient root); \
                     upload the patient",
                    false,
                ));
            };
            let dir = root.join(inside(&path)?);
            if !dir.is_dir() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("patient {path:?} does not exist under the server's patient root"),
                    false,
                ));
            }
            Ok((dir, None))
        }
        PatientSource::Upload { files } => {
            let dir = std::env::temp_dir().join(new_id("autoplan-upload"));
            let upload = UploadDir(dir.clone());
            for f in files {
                let rel = inside(&f.path)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(f.base64.as_bytes())
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid",
                            format!("patient file {:?}: not base64: {e}", f.path),
                            false,
                        )
                    })?;
                let path = dir.join(rel);
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|_| std::fs::write(&path, bytes));
                written.map_err(|e| ApiError::of(&Error::io(&f.path, e)))?;
            }
            Ok((dir, Some(upload)))
        }
    }
}

async fn open_case(
    State(s): State<Arc<AppState>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<Opened>)> {
    let req: OpenCase = json_body(body, s.config.limits.max_body_bytes)?;
    {
        let open = s.cases.lock().expect("cases lock").len();
        let mut opening = s.opening.lock().expect("opening lock");
        if open + *opening >= s.config.limits.max_cases {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-cases",
                format!(
                    "{} cases are open, the most this server allows; close one or wait",
                    s.config.limits.max_cases
                ),
                true,
            ));
        }
        *opening += 1;
    }
    let state = s.clone();
    let opened = tokio::task::spawn_blocking(move || -> ApiResult<(String, Case)> {
        let name = req.protocol_name.unwrap_or_else(|| "protocol.toml".into());
        let protocol =
            Protocol::parse(&req.protocol_toml, Path::new(&name)).map_err(|e| ApiError::of(&e))?;
        let (dir, upload) = patient_dir(&state, req.patient)?;
        let tps = state
            .opener
            .open(&dir, protocol)
            .map_err(|e| ApiError::of(&e))?;
        let case = Case {
            name: tps.name(),
            beams: tps.beams(),
            tps: Mutex::new(tps),
            optimizing: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            jobs: Mutex::new(HashMap::new()),
            normalized: Mutex::new(HashMap::new()),
            _upload: upload,
        };
        Ok((new_id("case"), case))
    })
    .await;
    *s.opening.lock().expect("opening lock") -= 1;
    let (id, case) = opened.map_err(join_failed("opening the case"))??;
    let answer = Opened {
        case: id.clone(),
        tps: case.name.clone(),
        idle_limit_s: s.config.limits.idle.as_secs_f64(),
        beams: case.beams.clone(),
    };
    tracing::info!("case {id} opened ({})", case.name);
    s.cases
        .lock()
        .expect("cases lock")
        .insert(id, Arc::new(case));
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

async fn close_case(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let case = s.case(&id)?;
    if case.busy() {
        return Err(busy("close it"));
    }
    s.cases.lock().expect("cases lock").remove(&id);
    s.forget_jobs(&id);
    tracing::info!("case {id} closed");
    Ok(StatusCode::NO_CONTENT)
}

async fn objectives(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<Objectives>> {
    let objectives = with_tps(s.case(&id)?, |t| t.objectives()).await?;
    Ok(axum::Json(Objectives { objectives }))
}

async fn report(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<tps_api::report::IterationReport>> {
    Ok(axum::Json(with_tps(s.case(&id)?, |t| t.report()).await?))
}

async fn plan(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<tps_api::report::PlanSummary>> {
    Ok(axum::Json(with_tps(s.case(&id)?, |t| t.plan()).await?))
}

async fn dose(State(s): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> ApiResult<Response> {
    let dose = with_tps(s.case(&id)?, |t| t.dose()).await?;
    let body = tokio::task::spawn_blocking(move || encode_dose(&dose))
        .await
        .map_err(join_failed("encoding the dose"))?;
    Ok(([(header::CONTENT_TYPE, DOSE_MEDIA_TYPE)], body).into_response())
}

async fn normalize(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<Normalized>> {
    let req: Normalize = json_body(body, s.config.limits.max_body_bytes)?;
    let case = s.case(&id)?;
    if let Some(&factor) = case
        .normalized
        .lock()
        .expect("keys lock")
        .get(&req.idempotency_key)
    {
        return Ok(axum::Json(Normalized { factor }));
    }
    let factor = with_tps(case.clone(), move |t| t.normalize(req.basis)).await?;
    case.normalized
        .lock()
        .expect("keys lock")
        .insert(req.idempotency_key, factor);
    Ok(axum::Json(Normalized { factor }))
}

async fn optimize(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<Job>)> {
    let req: Optimize = json_body(body, s.config.limits.max_body_bytes)?;
    let case = s.case(&id)?;
    let mut keys = case.jobs.lock().expect("keys lock");
    if let Some(job) = keys.get(&req.idempotency_key) {
        let current = s.jobs.lock().expect("jobs lock")[job].borrow().clone();
        return Ok((StatusCode::OK, axum::Json(current)));
    }
    if case
        .optimizing
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(busy("optimize again"));
    }
    let job = new_id("job");
    let running = Job {
        job: job.clone(),
        case: id.clone(),
        state: JobState::Running,
        report: None,
        error: None,
    };
    let (tx, rx) = watch::channel(running.clone());
    s.jobs.lock().expect("jobs lock").insert(job.clone(), rx);
    keys.insert(req.idempotency_key, job.clone());
    drop(keys);
    let changes = req.changes;
    tokio::task::spawn_blocking(move || {
        let result = case.lock().optimize(&changes);
        case.optimizing.store(false, Ordering::Release);
        case.touch();
        let mut done = running;
        match result {
            Ok(r) => {
                done.state = JobState::Done;
                done.report = Some(r);
            }
            Err(e) => {
                tracing::warn!("job {} of case {}: {e}", done.job, done.case);
                done.state = JobState::Failed;
                done.error = Some(ErrorBody::of(&e));
            }
        }
        let _ = tx.send(done);
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(s.jobs.lock().expect("jobs lock")[&job].borrow().clone()),
    ))
}

/// The query of a job poll.
#[derive(Debug, Deserialize)]
struct Wait {
    #[serde(default)]
    wait_s: f64,
}

async fn job(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(wait): Query<Wait>,
) -> ApiResult<axum::Json<Job>> {
    let rx = s.jobs.lock().expect("jobs lock").get(&id).cloned();
    let Some(mut rx) = rx else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-job",
            format!("no job {id}"),
            false,
        ));
    };
    if let Some(c) = s.cases.lock().expect("cases lock").get(&rx.borrow().case) {
        c.touch();
    }
    let limit =
        Duration::from_secs_f64(wait.wait_s.clamp(0.0, 3600.0)).min(s.config.limits.max_wait);
    let _ = tokio::time::timeout(limit, rx.wait_for(|j| j.state != JobState::Running)).await;
    let current = rx.borrow().clone();
    Ok(axum::Json(current))
}

/// Constant-time comparison of two byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &s.config.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            let why = if given.is_some() {
                "the bearer token is not this server's"
            } else {
                "this server needs `Authorization: Bearer <token>`"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why, false)
                .into_response();
        }
    }
    next.run(req).await
}

async fn not_found(req: Request) -> ApiError {
    let path = req.uri().path().to_string();
    let (code, message) = if path.starts_with("/v1/") {
        ("not-found", format!("no route {path}"))
    } else {
        (
            "unsupported-version",
            format!(
                "no route {path}: this server speaks protocol version {VERSION} (/v{VERSION}/...)"
            ),
        )
    };
    ApiError::new(StatusCode::NOT_FOUND, code, message, false)
}

/// The gateway's routes over `opener`.
fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/v1/hello", get(hello))
        .route("/v1/cases", post(open_case))
        .route("/v1/cases/{case}", axum::routing::delete(close_case))
        .route("/v1/cases/{case}/objectives", get(objectives))
        .route("/v1/cases/{case}/optimize", post(optimize))
        .route("/v1/cases/{case}/normalize", post(normalize))
        .route("/v1/cases/{case}/report", get(report))
        .route("/v1/cases/{case}/plan", get(plan))
        .route("/v1/cases/{case}/dose", get(dose))
        .route("/v1/jobs/{job}", get(job))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// A running gateway (for tests and embedding): its address, stopped when dropped.
pub struct Gateway {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Serves `opener` on `addr` (port 0 picks a free one) in a thread of its own.
    pub fn spawn(
        addr: SocketAddr,
        opener: Arc<dyn CaseOpener>,
        config: Config,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = serve(listener, opener, config, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `opener` on `listener` until `shutdown` completes (the CLI passes Ctrl-C).
pub async fn serve(
    listener: tokio::net::TcpListener,
    opener: Arc<dyn CaseOpener>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let idle = config.limits.idle;
    let state = Arc::new(AppState {
        opener,
        config,
        cases: Mutex::new(HashMap::new()),
        opening: Mutex::new(0),
        expired: Mutex::new(HashSet::new()),
        jobs: Mutex::new(HashMap::new()),
    });
    let reaper = state.clone();
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let reaping = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            reaper.close_idle();
        }
    });
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    reaping.abort();
    result
}
