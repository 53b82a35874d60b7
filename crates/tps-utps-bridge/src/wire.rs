//! The bodies of protocol v1, shared by the client and the gateway (docs/tps-protocol.md is
//! the prose, `docs/tps-protocol.openapi.json` the schema). JSON everywhere except the dose,
//! which is binary (see [`encode_dose`]).

use serde::{Deserialize, Serialize};
use tps_api::grid::Grid;
use tps_api::objectives::Objective;
use tps_api::report::GoalChange;
use tps_api::{Dose, Error, Normalization, Result};

/// The protocol's name, answered by `GET /v1/hello`.
pub const PROTOCOL: &str = "autoplan-tps";
/// The protocol version this crate speaks (the `/v1` of every path).
pub const VERSION: u32 = 1;
/// Media type of a dose body.
pub const DOSE_MEDIA_TYPE: &str = "application/vnd.autoplan.dose";

/// `GET /v1/hello`: who answers and which versions it speaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Hello {
    /// Always [`PROTOCOL`].
    pub protocol: String,
    /// Every protocol version the server speaks.
    pub versions: Vec<u32>,
    /// The server software, e.g. `autoplan 0.1.0`.
    pub server: String,
    /// The TPS behind it, e.g. `native`.
    pub tps: String,
}

/// Where the patient of a new case comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PatientSource {
    /// A patient directory the server can read, relative to the directory it serves patients
    /// from.
    Path {
        /// The directory.
        path: String,
    },
    /// The files of a patient directory, sent with the request.
    Upload {
        /// Every file, by its path inside the directory.
        files: Vec<UploadFile>,
    },
}

/// One file of an uploaded patient directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct UploadFile {
    /// Path inside the patient directory, `/`-separated, e.g. `structures/PTV.nrrd`.
    pub path: String,
    /// The bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

/// `POST /v1/cases`: open a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct OpenCase {
    /// The patient.
    pub patient: PatientSource,
    /// The protocol file's text (TOML).
    pub protocol_toml: String,
    /// The protocol file's name, for messages (e.g. `cervix.toml`).
    #[serde(default)]
    pub protocol_name: Option<String>,
}

/// The answer to [`OpenCase`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Opened {
    /// The case id for the other calls.
    pub case: String,
    /// The TPS's name for the case.
    pub tps: String,
    /// Seconds a case may stay idle before the server closes it.
    pub idle_limit_s: f64,
    /// The beam set-up the server plans the case with (the protocol's `[beams]` with any
    /// overrides of the server); absent when the server does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beams: Option<tps_api::Beams>,
}

/// `POST /v1/cases/{case}/optimize`: apply goal changes and optimize, as a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Optimize {
    /// Goal changes by objective id.
    pub changes: Vec<GoalChange>,
    /// Chosen by the client, unique per optimization: a request repeated with the same key
    /// returns the job of the first instead of optimizing again.
    pub idempotency_key: String,
}

/// `POST /v1/cases/{case}/normalize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Normalize {
    /// Where the coverage is measured.
    pub basis: Normalization,
    /// As for [`Optimize`]: a repeated request returns the first one's factor.
    pub idempotency_key: String,
}

/// The answer to [`Normalize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Normalized {
    /// The factor applied.
    pub factor: f64,
}

/// `GET /v1/cases/{case}/objectives`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Objectives {
    /// In protocol order.
    pub objectives: Vec<Objective>,
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Still optimizing.
    Running,
    /// Finished: `report` holds the iteration report.
    Done,
    /// Failed: `error` says why; the case keeps its previous plan.
    Failed,
}

/// A job: the answer to [`Optimize`] and to `GET /v1/jobs/{job}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Job {
    /// The job id.
    pub job: String,
    /// The case it optimizes.
    pub case: String,
    /// Its state.
    pub state: JobState,
    /// The iteration report, when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<tps_api::report::IterationReport>,
    /// The error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// An error: the body of every non-2xx answer is `{"error": ErrorBody}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ErrorBody {
    /// Machine-readable, e.g. `unknown-case`, `busy`, `invalid`.
    pub code: String,
    /// For people.
    pub message: String,
    /// Whether the same request may succeed later.
    pub temporary: bool,
}

/// The envelope of an error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The JSON header of a dose body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct DoseHeader {
    /// The grid the values lie on, x fastest.
    pub grid: Grid,
    /// Always `cGy`.
    pub unit: String,
    /// Number of values (the grid's voxel count).
    pub count: usize,
}

/// Most bytes a dose header may have.
const MAX_DOSE_HEADER: usize = 1 << 16;

/// A dose body: the header's length as a 4-byte little-endian integer, the JSON header, then
/// `count` little-endian IEEE-754 float32 values in cGy.
pub fn encode_dose(dose: &Dose) -> Vec<u8> {
    let header = serde_json::to_vec(&DoseHeader {
        grid: *dose.grid(),
        unit: "cGy".into(),
        count: dose.cgy().len(),
    })
    .expect("a dose header serializes");
    let mut out = Vec::with_capacity(4 + header.len() + 4 * dose.cgy().len());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for v in dose.cgy() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a dose body written by [`encode_dose`] (or any implementation of the protocol); a
/// short or inconsistent body is an error saying what is wrong, `origin` naming the sender.
pub fn decode_dose(bytes: &[u8], origin: &str) -> Result<Dose> {
    let bad =
        |why: String| Error::backend(origin, "bad-response", format!("dose body: {why}"), false);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes, not even a header length",
            bytes.len()
        )));
    }
    let n = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if n > MAX_DOSE_HEADER || 4 + n > bytes.len() {
        return Err(bad(format!(
            "header of {n} bytes in a body of {} bytes",
            bytes.len()
        )));
    }
    let header: DoseHeader = serde_json::from_slice(&bytes[4..4 + n])
        .map_err(|e| bad(format!("header is not a dose header: {e}")))?;
    header.grid.validate()?;
    if header.unit != "cGy" {
        return Err(bad(format!("unit {:?}, expected \"cGy\"", header.unit)));
    }
    let data = &bytes[4 + n..];
    if header.count != header.grid.len() || data.len() != 4 * header.count {
        return Err(bad(format!(
            "{} value bytes for {} values on a grid of {} voxels (cut short?)",
            data.len(),
            header.count,
            header.grid.len()
        )));
    }
    let cgy = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Dose::new(header.grid, cgy)
}

impl ErrorBody {
    /// The body for `e`: its code, its message and whether it is temporary.
    pub fn of(e: &Error) -> Self {
        let code = match e {
            Error::Backend { code, .. } => code.clone(),
            Error::Invalid { .. } | Error::Toml { .. } | Error::BadMetric { .. } => {
                "invalid".into()
            }
            Error::UnknownStructure { .. } => "unknown-structure".into(),
            Error::EmptyStructure { .. } => "empty-structure".into(),
            Error::Io { .. } => "io".into(),
            Error::Corrupt { .. } => "corrupt".into(),
            Error::GridMismatch { .. } => "grid-mismatch".into(),
            _ => "error".into(),
        };
        let message = match e {
            Error::Backend { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self {
            code,
            message,
            temporary: e.is_temporary(),
        }
    }

    /// The error for this body received from `origin`.
    pub fn into_error(self, origin: &str) -> Error {
        Error::backend(origin, self.code, self.message, self.temporary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dose() -> Dose {
        let g = Grid::new([3, 2, 2], [2.0, 2.5, 3.0], [-1.0, 0.5, 7.0]).unwrap();
        Dose::new(g, (0..12).map(|v| v as f32 * 10.5).collect()).unwrap()
    }

    #[test]
    fn a_dose_body_round_trips_and_its_layout_is_the_documented_one() {
        let d = dose();
        let bytes = encode_dose(&d);
        let n = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[4..4 + n]).unwrap();
        assert_eq!(header["unit"], "cGy");
        assert_eq!(header["count"], 12);
        assert_eq!(header["grid"]["dims"], serde_json::json!([3, 2, 2]));
        assert_eq!(bytes.len(), 4 + n + 48);
        assert_eq!(&bytes[4 + n + 4..4 + n + 8], &10.5f32.to_le_bytes());
        assert_eq!(decode_dose(&bytes, "test").unwrap(), d);
    }

    #[test]
    fn a_cut_or_inconsistent_dose_body_is_refused_with_the_reason() {
        let bytes = encode_dose(&dose());
        for (cut, why) in [
            (&bytes[..2], "not even a header length"),
            (&bytes[..10], "header of"),
            (&bytes[..bytes.len() - 3], "cut short"),
        ] {
            let e = decode_dose(cut, "http://x").unwrap_err();
            assert!(!e.is_temporary());
            let e = e.to_string();
            assert!(e.contains("http://x") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn errors_keep_their_code_and_whether_they_are_temporary() {
        let b = ErrorBody::of(&Error::backend("x", "busy", "optimizing", true));
        assert_eq!((b.code.as_str(), b.temporary), ("busy", true));
        let b = ErrorBody::of(&Error::invalid("p.toml", "weight", "-1", "bad"));
        assert_eq!((b.code.as_str(), b.temporary), ("invalid", false));
        assert!(b.message.contains("p.toml"));
        let e = b.into_error("http://gw");
        assert!(!e.is_temporary() && e.to_string().contains("http://gw"));
    }
}
