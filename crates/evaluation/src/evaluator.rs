//! The `Evaluator` trait and the protocol-driven evaluator.

use std::collections::BTreeMap;

use rayon::prelude::*;
use tps_api::dose::Dose;
use tps_api::metric::{DoseMetric, Metric, Unit};
use tps_api::patient::Patient;
use tps_api::protocol::Protocol;

use crate::dvh::{Dvh, homogeneity_index, paddick_ci};
use crate::error::{Error, Result};

/// A dose to evaluate: the patient (grid and structures), the dose on the patient's grid, and
/// the plan's monitor units per fraction when known.
#[derive(Debug, Clone, Copy)]
pub struct PlanDose<'a> {
    /// Patient with its structures.
    pub patient: &'a Patient,
    /// Dose in cGy with its grid, which must be the patient's CT grid.
    pub dose: &'a Dose,
    /// Monitor units per fraction, if the plan gives them.
    pub mu_per_fraction: Option<f64>,
}

/// One evaluated metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// The metric.
    pub metric: Metric,
    /// Its value in `unit`; `None` when the plan lacks what it needs (MU of a dose alone).
    pub value: Option<f64>,
    /// Unit of `value`.
    pub unit: Unit,
}

/// Turns a plan's dose into metric values.
pub trait Evaluator {
    /// Evaluates `plan`.
    fn evaluate(&self, plan: &PlanDose<'_>) -> Result<Vec<MetricValue>>;
}

/// An evaluator whose metrics, prescription and body structure come from a protocol file, so a
/// new tumour site declares its own metrics.
#[derive(Debug, Clone)]
pub struct ProtocolEvaluator {
    origin: String,
    metrics: Vec<(Metric, String)>,
    /// Prescription target and dose, and the body ([`Protocol::body_structure`]).
    protocol: Protocol,
}

impl ProtocolEvaluator {
    /// The evaluator of the protocol's metrics (parsed, and checked, when the protocol was
    /// read).
    pub fn from_protocol(protocol: &Protocol) -> Result<Self> {
        let origin = protocol.origin.display().to_string();
        let metrics = protocol
            .metrics
            .iter()
            .enumerate()
            .map(|(n, m)| (m.clone(), format!("evaluation.metrics[{n}]")))
            .collect();
        Ok(Self {
            origin,
            metrics,
            protocol: protocol.clone(),
        })
    }

    /// The metrics, in protocol order.
    pub fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.metrics.iter().map(|(m, _)| m)
    }
}

impl Evaluator for ProtocolEvaluator {
    fn evaluate(&self, plan: &PlanDose<'_>) -> Result<Vec<MetricValue>> {
        let p = plan.patient;
        let g = plan.dose.grid();
        if g != p.grid() {
            return Err(Error::Mismatch(format!(
                "dose grid {:?} ({} voxels, spacing {:?} mm, origin {:?} mm) is not patient {}'s \
                 CT grid {:?} ({} voxels, spacing {:?} mm, origin {:?} mm)",
                g.dims,
                g.len(),
                g.spacing_mm,
                g.origin_mm,
                p.id,
                p.grid().dims,
                p.grid().len(),
                p.grid().spacing_mm,
                p.grid().origin_mm
            )));
        }
        if let Some((n, v)) = plan.dose.first_invalid() {
            let [nx, ny, _] = g.dims;
            return Err(Error::Mismatch(format!(
                "dose voxel {n} (i {}, j {}, k {}) is {v} cGy: a dose must be finite and not \
                 negative",
                n % nx,
                (n / nx) % ny,
                n / (nx * ny)
            )));
        }
        if let Some(mu) = plan.mu_per_fraction {
            if !(mu.is_finite() && mu > 0.0) {
                return Err(Error::Mismatch(format!(
                    "MU per fraction {mu}: must be a positive number"
                )));
            }
        }
        let dose_cgy = plan.dose.cgy();
        let rx = &self.protocol.prescription;
        // Every structure a metric needs, with the field that asked first (for messages).
        let mut needed: BTreeMap<String, String> = BTreeMap::new();
        for (m, field) in &self.metrics {
            match m {
                Metric::Structure { name, .. } => {
                    needed.entry(name.clone()).or_insert_with(|| field.clone());
                }
                Metric::Ci | Metric::Hi => {
                    needed
                        .entry(rx.target.clone())
                        .or_insert_with(|| "prescription.target".into());
                }
                Metric::Mu => {}
            }
        }
        let masks = needed
            .iter()
            .map(|(name, field)| Ok((name.clone(), &p.require(name, &self.origin, field)?.mask)))
            .collect::<Result<Vec<_>>>()?;
        let dvhs: BTreeMap<String, Dvh> = masks
            .par_iter()
            .map(|(name, mask)| Ok((name.clone(), Dvh::new(name, dose_cgy, mask)?)))
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(self.metrics.len());
        for (m, _) in &self.metrics {
            let value = match m {
                Metric::Structure { name, metric } => {
                    let d = &dvhs[name];
                    Some(match *metric {
                        DoseMetric::Dmax => d.max(),
                        DoseMetric::Dmin => d.min(),
                        DoseMetric::Dmean => d.mean(),
                        DoseMetric::DPercent(v) => d.d_percent(v),
                        DoseMetric::DCc(v) => d.d_cc(v),
                        DoseMetric::VDose(v) => d.v_percent(v),
                    })
                }
                Metric::Ci => {
                    let target = &p
                        .require(&rx.target, &self.origin, "prescription.target")?
                        .mask;
                    let body = &self.protocol.body_structure(p)?.mask;
                    Some(paddick_ci(dose_cgy, target, body, rx.dose_cgy)?)
                }
                Metric::Hi => Some(homogeneity_index(&dvhs[&rx.target])),
                Metric::Mu => plan.mu_per_fraction,
            };
            // An undefined value (HI of a target without dose) is missing, not NaN.
            let value = match value {
                Some(v) if !v.is_finite() => {
                    tracing::warn!(
                        "{m} is undefined for this dose ({v}); written as missing (n/a)"
                    );
                    None
                }
                v => v,
            };
            out.push(MetricValue {
                metric: m.clone(),
                value,
                unit: m.unit(),
            });
        }
        Ok(out)
    }
}
