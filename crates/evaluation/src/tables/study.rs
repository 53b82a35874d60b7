//! A study's summary: per plan the loop's numbers (criteria met, iterations, normalization,
//! times, guard counts) as the leading columns of its per-patient CSV, and the Markdown
//! heading that sums them up over the cohort.

use crate::error::Result;
use crate::stats::mean_std;

/// Columns of a study's per-patient table before the protocol's metrics, in order.
pub const COLUMNS: [&str; 10] = [
    "criteria met",
    "iterations",
    "normalization",
    "TPS s",
    "advisor s",
    "total s",
    "fallbacks",
    "advisor failures",
    "guard violations",
    "must goals failed",
];

/// The loop's numbers of one plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanNumbers {
    /// The protocol's termination criteria held at the end.
    pub criteria_met: bool,
    /// Optimizations run.
    pub iterations: u32,
    /// Factor of the final normalization.
    pub normalization: f64,
    /// Time in the TPS, s.
    pub tps_s: f64,
    /// Time in the advisor, s.
    pub advisor_s: f64,
    /// Whole plan with its outputs, s.
    pub total_s: f64,
    /// Advice replaced by the rule-based physicist.
    pub fallbacks: u32,
    /// Advisor calls that failed.
    pub advisor_failures: u32,
    /// Guard violations of every kind.
    pub violations: u32,
    /// Clinical must-goals the final plan failed.
    pub must_goals_failed: u32,
}

impl PlanNumbers {
    /// The values in [`COLUMNS`] order.
    pub fn to_row(&self) -> Vec<f64> {
        vec![
            f64::from(u8::from(self.criteria_met)),
            f64::from(self.iterations),
            self.normalization,
            self.tps_s,
            self.advisor_s,
            self.total_s,
            f64::from(self.fallbacks),
            f64::from(self.advisor_failures),
            f64::from(self.violations),
            f64::from(self.must_goals_failed),
        ]
    }

    /// The numbers from a row in [`COLUMNS`] order (as read back from the CSV); counts are
    /// rounded to the nearest whole number.
    pub fn from_row(row: &[f64]) -> Self {
        let count = |v: f64| v.round().max(0.0) as u32;
        Self {
            criteria_met: row[0] > 0.5,
            iterations: count(row[1]),
            normalization: row[2],
            tps_s: row[3],
            advisor_s: row[4],
            total_s: row[5],
            fallbacks: count(row[6]),
            advisor_failures: count(row[7]),
            violations: count(row[8]),
            must_goals_failed: row.get(9).map_or(0, |&v| count(v)),
        }
    }
}

/// What a study ran: the names its heading shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyHeading<'a> {
    /// Cohort name.
    pub cohort: &'a str,
    /// Tumour site of the protocol.
    pub site: &'a str,
    /// Protocol file.
    pub protocol: &'a str,
    /// The advisor (its provider file, or the rule-based physicist).
    pub advisor: &'a str,
    /// Guard policy.
    pub guard: &'a str,
}

/// `mean ± std (range lo-hi)` with one decimal.
fn spread(values: &[f64]) -> Result<String> {
    let (m, sd) = mean_std(values)?;
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok(format!("{m:.1} ± {sd:.1} (range {lo:.1}-{hi:.1})"))
}

/// The plans whose final plan failed clinical must-goals, as `pNN (count)`.
pub fn plans_failing_goals(plans: &[(String, PlanNumbers)]) -> Vec<String> {
    plans
        .iter()
        .filter(|(_, p)| p.must_goals_failed > 0)
        .map(|(id, p)| format!("{id} ({})", p.must_goals_failed))
        .collect()
}

/// The study's Markdown heading: criteria met (and by whom not), iterations, times and guard
/// counts over `plans` (patient label and numbers).
pub fn summary_markdown(h: &StudyHeading<'_>, plans: &[(String, PlanNumbers)]) -> Result<String> {
    let column =
        |f: fn(&PlanNumbers) -> f64| -> Vec<f64> { plans.iter().map(|(_, p)| f(p)).collect() };
    let missed: Vec<&str> = plans
        .iter()
        .filter(|(_, p)| !p.criteria_met)
        .map(|(id, _)| id.as_str())
        .collect();
    let sum = |f: fn(&PlanNumbers) -> u32| plans.iter().map(|(_, p)| f(p)).sum::<u32>();
    let goals_failed = plans_failing_goals(plans);
    Ok(format!(
        "# Study: {} patients of {} with {}\n\nprotocol {}, advisor {}, guard {}\n\n\
         - criteria met: {} of {}{}\n\
         - clinical must-goals passed by the final plan: {} of {}{}\n\
         - iterations (optimizations): {}\n\
         - TPS time per plan: {} s; advisor time per plan: {} s; whole plan with outputs: {} s\n\
         - guard: {} violations, {} fallbacks, {} advisor failures in all\n\n",
        plans.len(),
        h.cohort,
        h.site,
        h.protocol,
        h.advisor,
        h.guard,
        plans.len() - missed.len(),
        plans.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!(" (not met: {})", missed.join(", "))
        },
        plans.len() - goals_failed.len(),
        plans.len(),
        if goals_failed.is_empty() {
            String::new()
        } else {
            format!(
                " (failed, with the number of failed must-goals: {})",
                goals_failed.join(", ")
            )
        },
        spread(&column(|p| f64::from(p.iterations)))?,
        spread(&column(|p| p.tps_s))?,
        spread(&column(|p| p.advisor_s))?,
        spread(&column(|p| p.total_s))?,
        sum(|p| p.violations),
        sum(|p| p.fallbacks),
        sum(|p| p.advisor_failures),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(met: bool, iterations: u32) -> PlanNumbers {
        PlanNumbers {
            criteria_met: met,
            iterations,
            normalization: 1.01,
            tps_s: 2.0,
            advisor_s: 0.5,
            total_s: 3.0,
            fallbacks: 1,
            advisor_failures: 0,
            violations: 2,
            must_goals_failed: 0,
        }
    }

    #[test]
    fn numbers_round_trip_through_a_row_and_sum_up() {
        let p = numbers(true, 7);
        assert_eq!(p.to_row().len(), COLUMNS.len());
        assert_eq!(PlanNumbers::from_row(&p.to_row()), p);
        let h = StudyHeading {
            cohort: "c",
            site: "cervix",
            protocol: "p.toml",
            advisor: "rule",
            guard: "fallback",
        };
        let md = summary_markdown(
            &h,
            &[
                ("p01".into(), numbers(true, 6)),
                ("p02".into(), numbers(false, 10)),
            ],
        )
        .unwrap();
        assert!(md.contains("- criteria met: 1 of 2 (not met: p02)"), "{md}");
        assert!(
            md.contains("iterations (optimizations): 8.0 ± 2.8 (range 6.0-10.0)"),
            "{md}"
        );
        assert!(
            md.contains("4 violations, 2 fallbacks, 0 advisor failures"),
            "{md}"
        );
    }
}
