//! The `Evaluator` trait and the protocol-driven evaluator.

use std::collections::BTreeMap;

use rayon::prelude::*;
use tps_core::Patient;
use tps_core::protocol::Protocol;

use crate::dvh::{Dvh, homogeneity_index, paddick_ci};
use crate::error::{Error, Result};
use crate::metric::{DoseMetric, Metric, Unit};

/// A dose to evaluate: the patient (grid and structures), the dose on the patient's grid, and
/// the plan's monitor units per fraction when known.
#[derive(Debug, Clone, Copy)]
pub struct PlanDose<'a> {
    /// Patient with its structures.
    pub patient: &'a Patient,
    /// Dose in cGy on the patient's CT grid, x-fastest.
    pub dose_cgy: &'a [f32],
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
    target: String,
    reference_cgy: f64,
    body: String,
}

impl ProtocolEvaluator {
    /// Parses the protocol's metric list; a malformed metric names the file and the field.
    pub fn from_protocol(protocol: &Protocol) -> Result<Self> {
        let origin = protocol.origin.display().to_string();
        let metrics = protocol
            .metrics
            .iter()
            .enumerate()
            .map(|(n, text)| {
                let field = format!("evaluation.metrics[{n}]");
                Metric::parse(text, &format!("{origin}: {field}")).map(|m| (m, field))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            origin,
            metrics,
            target: protocol.prescription.target.clone(),
            reference_cgy: protocol.prescription.dose_cgy,
            body: protocol.body.clone(),
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
        if plan.dose_cgy.len() != p.grid().len() {
            return Err(Error::Mismatch(format!(
                "dose has {} voxels, patient {} has {} on its CT grid",
                plan.dose_cgy.len(),
                p.id,
                p.grid().len()
            )));
        }
        // Every structure a metric needs, with the field that asked first (for messages).
        let mut needed: BTreeMap<String, String> = BTreeMap::new();
        for (m, field) in &self.metrics {
            match m {
                Metric::Structure { name, .. } => {
                    needed.entry(name.clone()).or_insert_with(|| field.clone());
                }
                Metric::Ci | Metric::Hi => {
                    needed
                        .entry(self.target.clone())
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
            .map(|(name, mask)| Ok((name.clone(), Dvh::new(name, plan.dose_cgy, mask)?)))
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
                        .require(&self.target, &self.origin, "prescription.target")?
                        .mask;
                    let body = &p.require(&self.body, &self.origin, "evaluation.body")?.mask;
                    Some(paddick_ci(plan.dose_cgy, target, body, self.reference_cgy)?)
                }
                Metric::Hi => Some(homogeneity_index(&dvhs[&self.target])),
                Metric::Mu => plan.mu_per_fraction,
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
