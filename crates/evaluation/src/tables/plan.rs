//! One plan's tables: the iteration report (per objective: goal, current dose, value, ideal
//! range, status) and the protocol's metric values as text and CSV.

use tps_api::goals::GoalResult;
use tps_api::{Arrangement, Beams, IterationReport};

use crate::evaluator::MetricValue;

/// The iteration report as a Markdown table.
pub fn report_markdown(r: &IterationReport) -> String {
    let mut s = format!(
        "iteration {}: PTV D95 {:.0} cGy (Rx {:.0}), objective {:.4e}, {} solver iterations, {:.1} s\n\n",
        r.iteration,
        r.coverage_cgy,
        r.prescription_cgy,
        r.total_objective,
        r.solver_iterations,
        r.wall_s
    );
    s += "| id | structure | type | weight | goal cGy | current cGy | value | ideal range | status |\n";
    s += "|---|---|---|---:|---:|---:|---:|---|---|\n";
    for o in &r.objectives {
        s += &format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.2e} | {:.0e}..{:.0e} | {:?} |\n",
            o.id,
            o.structure,
            o.kind,
            o.weight,
            o.goal_cgy,
            o.current_cgy,
            o.value,
            o.ideal_range[0],
            o.ideal_range[1],
            o.status
        );
    }
    s += &format!(
        "\nstudy criteria met (coverage, OAR values in range): {}\n",
        r.criteria_met()
    );
    if !r.goals.is_empty() {
        s += &format!(
            "\nclinical goals on this iteration's dose (every must-goal passed: {}):\n\n{}",
            r.must_goals_passed(),
            goals_markdown(&r.goals)
        );
    }
    s
}

/// Clinical goals as a Markdown table: goal, priority, value, tolerance, status.
pub fn goals_markdown(goals: &[GoalResult]) -> String {
    let mut s = String::from("| goal | priority | value | tolerance | status |\n");
    s += "|---|---|---:|---:|---|\n";
    for g in goals {
        s += &format!(
            "| {} | {} | {} {} | {} | {} |\n",
            g.label,
            g.priority.word(),
            if g.value.is_finite() {
                format!("{:.1}", g.value)
            } else {
                "n/a".into()
            },
            g.unit.label(),
            if g.tolerance > 0.0 {
                format!("{} {}", g.tolerance, g.unit.label())
            } else {
                "-".into()
            },
            g.status.word()
        );
    }
    s
}

/// The beam set-up as Markdown: the protocol's description, then every gantry angle, one row
/// per arc (one row for static beams).
pub fn beams_markdown(beams: &Beams) -> String {
    let angle = |g: f64| {
        let r = (g * 100.0).round() / 100.0;
        format!("{r}")
    };
    let arcs = beams.gantry_angles();
    let mut s = format!(
        "{}\n\n| {} | gantry angles, degrees |\n|---|---|\n",
        beams.describe(),
        if matches!(beams.arrangement, Arrangement::Static { .. }) {
            "beams"
        } else {
            "arc"
        }
    );
    for (n, a) in arcs.iter().enumerate() {
        let row = if matches!(beams.arrangement, Arrangement::Static { .. }) {
            "static".to_string()
        } else {
            (n + 1).to_string()
        };
        s += &format!(
            "| {row} | {} |\n",
            a.iter().map(|&g| angle(g)).collect::<Vec<_>>().join(", ")
        );
    }
    s
}

/// A metric value as written in tables: four decimals, `n/a` when undefined.
fn cell(v: &MetricValue) -> String {
    v.value.map_or("n/a".to_string(), |x| format!("{x:.4}"))
}

/// Two evaluations of the same metrics side by side as a Markdown table, with the change from
/// the first to the second (`n/a` where either lacks a value).
pub fn comparison_markdown(
    (label_a, a): (&str, &[MetricValue]),
    (label_b, b): (&str, &[MetricValue]),
) -> String {
    let mut s =
        format!("| metric | {label_a} | {label_b} | change | unit |\n|---|---|---|---|---|\n");
    for (x, y) in a.iter().zip(b) {
        let change = match (x.value, y.value) {
            (Some(p), Some(q)) => format!("{:+.4}", q - p),
            _ => "n/a".into(),
        };
        s += &format!(
            "| {} | {} | {} | {change} | {} |\n",
            x.metric,
            cell(x),
            cell(y),
            x.unit.label()
        );
    }
    s
}

/// Metric values as an aligned text table.
pub fn metrics_text(values: &[MetricValue]) -> String {
    let mut s = format!("{:<24} {:>12}  {}\n", "metric", "value", "unit");
    for v in values {
        s += &format!(
            "{:<24} {:>12}  {}\n",
            v.metric.to_string(),
            cell(v),
            v.unit.label()
        );
    }
    s
}

/// Metric values as CSV (`metric,value,unit`).
pub fn metrics_csv(values: &[MetricValue]) -> String {
    let mut w = String::from("metric,value,unit\n");
    for v in values {
        w += &format!("{},{},{}\n", v.metric, cell(v), v.unit.label());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Metric, Unit};

    /// The comparison pairs metrics in order and shows the change.
    #[test]
    fn the_comparison_shows_both_values_and_the_change() {
        let m = Metric::parse("PTV: D98", "test").unwrap();
        let a = [MetricValue {
            metric: m.clone(),
            value: Some(4500.0),
            unit: Unit::Cgy,
        }];
        let b = [MetricValue {
            metric: m,
            value: Some(4432.5),
            unit: Unit::Cgy,
        }];
        let md = comparison_markdown(("fluence", &a), ("deliverable", &b));
        assert!(
            md.contains("| PTV D98 | 4500.0000 | 4432.5000 | -67.5000 | cGy |"),
            "{md}"
        );
    }

    /// Every gantry angle is listed, one row per arc.
    #[test]
    fn the_beam_table_lists_every_gantry_angle() {
        let md = beams_markdown(&Beams::full_arcs(2, 4));
        assert!(
            md.starts_with("2 full arc(s) x 4 beams (8 beams), collimator 0 deg"),
            "{md}"
        );
        assert!(
            md.contains("| 1 | 0, 90, 180, 270 |\n| 2 | 45, 135, 225, 315 |\n"),
            "{md}"
        );
        let md = beams_markdown(&Beams {
            arrangement: Arrangement::Static {
                angles_deg: vec![0.0, 72.5, 144.25],
            },
            ..Beams::default()
        });
        assert!(md.contains("| beams | gantry angles, degrees |"), "{md}");
        assert!(md.contains("| static | 0, 72.5, 144.25 |"), "{md}");
    }

    #[test]
    fn metric_tables_write_undefined_values_as_n_a() {
        let values = vec![
            MetricValue {
                metric: Metric::parse("CI", "test").unwrap(),
                value: Some(0.91234),
                unit: Unit::Index,
            },
            MetricValue {
                metric: Metric::parse("HI", "test").unwrap(),
                value: None,
                unit: Unit::Index,
            },
        ];
        assert_eq!(
            metrics_csv(&values),
            "metric,value,unit\nCI,0.9123,\nHI,n/a,\n"
        );
        let text = metrics_text(&values);
        assert!(text.lines().nth(2).unwrap().contains("n/a"), "{text}");
    }
}
