//! `autoplan plan --patients`: a study, the same plan for several cohort patients, each into
//! its own directory, with a row per patient in `plans.csv` (written as each plan ends, so a
//! rerun resumes) and `study.md` summarizing termination, iterations, time and metrics beside
//! a reference column.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use evaluation::ProtocolEvaluator;
use evaluation::reference::ReferenceTable;
use evaluation::tables::study::{
    COLUMNS, PlanNumbers, StudyHeading, plans_failing_goals, summary_markdown,
};
use phantoms::cohort::CohortSpec;
use tps_api::Protocol;

use super::plan::{Args, advice_steps, run_one, stood_in};
use crate::args::name_of;
use crate::cohort_run::{PatientRows, select_ids};
use crate::lock::OutputLock;

/// Plans the patients `a.patients` names, each into `<out>/pNN`, resuming from `plans.csv`.
pub fn run(a: &Args) -> Result<()> {
    let list = a.patients.as_deref().context("a study needs --patients")?;
    let cohort = a
        .cohort
        .as_ref()
        .context("--patients needs --cohort (a study plans cohort patients)")?;
    if a.patient.is_some() {
        bail!("give either --patient N or --patients LIST, not both");
    }
    let spec = CohortSpec::load(cohort)?;
    let ids = select_ids(Some(list), Vec::new(), &spec, cohort)?;
    let protocol = Protocol::load(&a.protocol)?;
    planner::planning_of(&protocol)?;
    let evaluator = ProtocolEvaluator::from_protocol(&protocol)?;
    let reference = match &a.reference {
        Some(path) => ReferenceTable::load(path)?,
        None => ReferenceTable {
            source: "no reference (--reference)".into(),
            entries: Vec::new(),
        },
    };
    let metrics: Vec<_> = evaluator.metrics().cloned().collect();
    let mut header = vec!["patient".to_string()];
    header.extend(COLUMNS.map(String::from));
    header.extend(metrics.iter().map(|m| m.to_string()));
    if a.deliverable {
        header.extend(metrics.iter().map(|m| format!("deliverable {m}")));
    }
    let _lock = OutputLock::acquire(&a.out)?;
    let csv_path = a.out.join("plans.csv");
    let mut rows = PatientRows::open(&csv_path, &header)?;
    let todo = rows.pending(&ids);
    out!(
        "study of {} patients of {}: {} already in {}, {} to plan",
        ids.len(),
        spec.name,
        ids.len() - todo.len(),
        csv_path.display(),
        todo.len()
    );
    let started = Instant::now();
    for (n, &id) in todo.iter().enumerate() {
        out!("[{}/{}] patient {id}", n + 1, todo.len());
        let args = Args {
            patient: Some(id),
            patients: None,
            out: a.out.join(format!("p{id:02}")),
            ..a.clone()
        };
        let r = run_one(&args)?;
        let mut row = r.numbers.to_row();
        row.extend(r.metrics.iter().map(|v| v.value.unwrap_or(f64::NAN)));
        if let Some(d) = &r.deliverable {
            row.extend(d.iter().map(|v| v.value.unwrap_or(f64::NAN)));
        }
        rows.append(id, row)?;
        let per = started.elapsed().as_secs_f64() / (n + 1) as f64;
        out!(
            "[{}/{}] patient {id}: {} after {} iterations; about {:.0} s left",
            n + 1,
            todo.len(),
            if r.numbers.criteria_met {
                "criteria met"
            } else {
                "iteration cap"
            },
            r.numbers.iterations,
            per * (todo.len() - n - 1) as f64
        );
    }
    let plans: Vec<(String, PlanNumbers)> = ids
        .iter()
        .map(|i| (format!("p{i:02}"), PlanNumbers::from_row(&rows.done[i])))
        .collect();
    let advisor = match &a.provider {
        Some(p) => p.display().to_string(),
        None => "rule-based physicist".into(),
    };
    let protocol_file = a.protocol.display().to_string();
    let heading = StudyHeading {
        cohort: &spec.name,
        site: &protocol.site,
        protocol: &protocol_file,
        advisor: &advisor,
        guard: &name_of(a.guard),
    };
    let mut md = summary_markdown(&heading, &plans)?;
    let rule_based = a.rule_based()?;
    let stood_in: Vec<String> = plans
        .iter()
        .filter(|(_, n)| stood_in(rule_based, n))
        .map(|(id, n)| format!("{id} ({} of {})", n.fallbacks, advice_steps(n)))
        .collect();
    if !stood_in.is_empty() {
        md += &format!(
            "**Not all the advisor's:** the rule-based fallback made advice steps of {} of {} \
             plans: {}.\n\n",
            stood_in.len(),
            plans.len(),
            stood_in.join(", ")
        );
    }
    md += &rows.comparison(
        &ids,
        &metrics,
        COLUMNS.len(),
        &reference,
        &format!("native TPS, {advisor} (n = {})", ids.len()),
    )?;
    if a.deliverable {
        md += &format!(
            "\n## Deliverable plans\n\nThe same plans sequenced into arcs of control points \
             (`--deliverable`, {}-degree dose bins), their dose from the apertures; each \
             pNN/deliverable.md sets them beside the fluence plan.\n\n",
            a.dose_angle_step
        );
        md += &rows.comparison(
            &ids,
            &metrics,
            COLUMNS.len() + metrics.len(),
            &reference,
            &format!("deliverable, {advisor} (n = {})", ids.len()),
        )?;
    }
    let md_path = a.out.join("study.md");
    crate::output::write_text(&md_path, &md)?;
    outn!("{md}");
    out!("wrote {} and {}", rows.path().display(), md_path.display());
    let goals_failed = plans_failing_goals(&plans);
    if !stood_in.is_empty() && !a.allow_fallback {
        bail!(
            "the rule-based fallback made advice steps of {} of {} plans ({}): the study is not \
             all {advisor}'s; check the provider, or pass --allow-fallback to accept it",
            stood_in.len(),
            plans.len(),
            stood_in.join(", ")
        );
    }
    if !goals_failed.is_empty() {
        return Err(super::plan::GoalsFailed(format!(
            "{} of {} final plans fail clinical must-goals: {} (see each pNN/report.md)",
            goals_failed.len(),
            plans.len(),
            goals_failed.join(", ")
        ))
        .into());
    }
    Ok(())
}
