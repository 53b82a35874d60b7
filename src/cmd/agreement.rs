//! `autoplan agreement`: how sensible an advisor's decisions are, measured on the reports of a
//! few-shot example pool (from `autoplan examples`) against the rule-based physicist.
//!
//! For every report of the pool the advisor is asked once (no history; its few-shot examples,
//! if any, come from other patients only), and for every OAR objective its move (tighten,
//! relax or keep, read from the goals it proposes) is set beside the rule's: same move, the
//! opposite move (tighten against relax), a move where the rule keeps, a keep where the rule
//! moves. The guard's verdict on each answer is counted too. One CSV row per objective and
//! report, and a summary. With few-shot examples, the first example's move per objective is
//! set beside them too (the CSV's `example` column), so that what the model adds to copying
//! it can be told apart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use llm_providers::advice::{AdvisorContext, LlmAdvisor};
use llm_providers::config::{ProviderConfig, build};
use llm_providers::rule_based::RuleBasedAdvisor;
use planner::guard::{GuardSettings, judge};
use tps_api::{GoalChange, IterationReport, Protocol, Role};

use crate::args::Examples;

/// Measure how sensible an advisor's decisions are: ask it about every report of a few-shot
/// example pool (from `autoplan examples`) and compare its move per OAR objective (tighten,
/// relax, keep) with the rule-based physicist's; count the guard's verdicts.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Provider file of the advisor to measure.
    #[arg(long)]
    pub provider: PathBuf,
    /// Example pool (JSON, from `autoplan examples`): the reports to ask about.
    #[arg(long)]
    pub examples: PathBuf,
    /// Protocol the pool was planned with.
    #[arg(long)]
    pub protocol: PathBuf,
    /// Few-shot examples per prompt (from other patients than the report's).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=crate::args::MAX_EXAMPLES))]
    pub n_examples: u16,
    /// Which examples: fixed or nearest.
    #[arg(long, value_enum, default_value_t = Examples::Nearest)]
    pub selection: Examples,
    /// Ask about the first N reports only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// CSV with one row per report and OAR objective.
    #[arg(long)]
    pub out: PathBuf,
}

/// A move of one objective's goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Tighten,
    Relax,
    Keep,
}

impl Move {
    fn of(goals: &[GoalChange], id: &str, current_goal: f64) -> Move {
        match goals.iter().find(|g| g.id == id) {
            Some(g) if g.goal_cgy < current_goal - 1e-9 => Move::Tighten,
            Some(g) if g.goal_cgy > current_goal + 1e-9 => Move::Relax,
            _ => Move::Keep,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Move::Tighten => "tighten",
            Move::Relax => "relax",
            Move::Keep => "keep",
        }
    }
}

/// How an advisor's move compares with the rule's.
fn compare(model: Move, rule: Move) -> &'static str {
    match (model, rule) {
        (m, r) if m == r => "same",
        (Move::Tighten, Move::Relax) | (Move::Relax, Move::Tighten) => "opposite",
        (_, Move::Keep) => "moved, rule keeps",
        _ => "kept, rule moves",
    }
}

/// The patient part of an example's source (`cervix-35/p01, iteration 3` -> `cervix-35/p01`).
fn patient_of(source: &str) -> &str {
    source.split(',').next().unwrap_or(source)
}

/// Runs the measurement.
pub fn run(a: &Args) -> Result<()> {
    let protocol = Protocol::load(&a.protocol)?;
    let planning = planner::planning_of(&protocol)?;
    let advisor: Box<dyn LlmAdvisor> = build(&ProviderConfig::load(&a.provider)?)?;
    let pool = planner::examples::load(&a.examples).map_err(anyhow::Error::msg)?;
    if pool.is_empty() {
        bail!("{}: the example pool is empty", a.examples.display());
    }
    planner::examples::check_pool(&pool, &protocol, &a.examples).map_err(anyhow::Error::msg)?;
    let patients: std::collections::BTreeSet<&str> =
        pool.iter().map(|e| patient_of(&e.source)).collect();
    let fewest_others = pool
        .iter()
        .map(|ex| {
            pool.iter()
                .filter(|e| patient_of(&e.source) != patient_of(&ex.source))
                .count()
        })
        .min()
        .unwrap_or(0);
    let n_examples = usize::from(a.n_examples);
    if n_examples > fewest_others {
        bail!(
            "--n-examples {}: {} holds {} examples of {} patients, so some reports have only \
             {fewest_others} from other patients; ask for at most {fewest_others}",
            a.n_examples,
            a.examples.display(),
            pool.len(),
            patients.len()
        );
    }
    let selection = a.selection.selection();
    let n = a
        .limit
        .map_or(pool.len(), |l| usize::try_from(l).unwrap_or(usize::MAX))
        .min(pool.len());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut csv = String::from("source,objective,value,status,rule,advisor,comparison,example\n");
    let mut copy = Copying::default();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut violations: BTreeMap<String, usize> = BTreeMap::new();
    let (mut answers, mut failures, mut fallbacks) = (0usize, 0usize, 0usize);
    let mut latency = Vec::new();
    out!(
        "asking {} about {n} reports of {} ({} few-shot examples each, from other patients)",
        advisor.name(),
        a.examples.display(),
        a.n_examples
    );
    for (k, ex) in pool.iter().take(n).enumerate() {
        let others: Vec<_> = pool
            .iter()
            .filter(|e| patient_of(&e.source) != patient_of(&ex.source))
            .cloned()
            .collect();
        let report: &IterationReport = &ex.report;
        let shown = planner::examples::select(&others, report, n_examples, selection);
        // The first example's move per objective: what an advisor that only copied it would do.
        let copied = |id: &str| {
            shown.first().and_then(|e| {
                let row = e.report.objectives.iter().find(|o| o.id == id)?;
                Some(Move::of(&e.changes, id, row.goal_cgy))
            })
        };
        let ctx = AdvisorContext::for_protocol(
            &protocol,
            planning,
            report.clone(),
            Vec::new(),
            shown.clone(),
        );
        let rule = RuleBasedAdvisor.decide(&ctx);
        let t = Instant::now();
        let answer = runtime.block_on(advisor.advise(&ctx));
        latency.push(t.elapsed().as_secs_f64());
        let goals = match answer {
            Ok(advice) => {
                answers += 1;
                let verdict = judge(
                    &advice.goals,
                    report,
                    &GuardSettings::default(),
                    &rule.goals,
                );
                if verdict.fell_back {
                    fallbacks += 1;
                }
                for d in &verdict.decisions {
                    for v in &d.violations {
                        *violations.entry(format!("{v:?}")).or_default() += 1;
                    }
                }
                advice.goals
            }
            Err(e) => {
                failures += 1;
                tracing::warn!("{}: {e}", ex.source);
                continue;
            }
        };
        for o in report.objectives.iter().filter(|o| o.role == Role::Oar) {
            let r = Move::of(&rule.goals, &o.id, o.goal_cgy);
            let m = Move::of(&goals, &o.id, o.goal_cgy);
            let c = compare(m, r);
            *counts.entry(c).or_default() += 1;
            let e = copied(&o.id);
            if let Some(e) = e {
                copy.shown += 1;
                copy.example_same += usize::from(e == r);
                copy.follows += usize::from(e == m);
                copy.beyond += usize::from(e != r && m == r);
            }
            csv += &csv_line(&[
                &ex.source,
                &o.id,
                &format!("{:.3e}", o.value),
                &format!("{:?}", o.status),
                r.name(),
                m.name(),
                c,
                e.map_or("", Move::name),
            ]);
        }
        out!(
            "[{}/{n}] {}: {:.1} s",
            k + 1,
            ex.source,
            latency.last().copied().unwrap_or_default()
        );
    }
    crate::output::write_text(&a.out, &csv)?;
    let total: usize = counts.values().sum();
    let pct = |c: &str| 100.0 * *counts.get(c).unwrap_or(&0) as f64 / total.max(1) as f64;
    let mean_latency = latency.iter().sum::<f64>() / latency.len().max(1) as f64;
    out!(
        "{}: {answers} answers, {failures} failures; per OAR objective ({total}): same move as the \
         rule {:.1} %, opposite {:.1} %, moved where the rule keeps {:.1} %, kept where the rule \
         moves {:.1} %; guard: {fallbacks} answers replaced, violations {violations:?}; {:.1} s \
         per answer; rows in {}",
        advisor.name(),
        pct("same"),
        pct("opposite"),
        pct("moved, rule keeps"),
        pct("kept, rule moves"),
        mean_latency,
        a.out.display()
    );
    if copy.shown > 0 {
        let pct = |k: usize| 100.0 * k as f64 / copy.shown as f64;
        out!(
            "the first few-shot example's move, where it has the objective ({}): the rule's {:.1} \
             %; the advisor's {:.1} %; the advisor right where the example is not {:.1} %",
            copy.shown,
            pct(copy.example_same),
            pct(copy.follows),
            pct(copy.beyond)
        );
    }
    Ok(())
}

/// How much of an advisor's agreement its first few-shot example already holds: an advisor
/// that only copied the example would agree as often as the example does.
#[derive(Default)]
struct Copying {
    /// Objectives the example shows.
    shown: usize,
    /// Of those, where the example's move is the rule's.
    example_same: usize,
    /// Where the advisor's move is the example's.
    follows: usize,
    /// Where the advisor is right and the example is not.
    beyond: usize,
}

/// One CSV line of `fields` (RFC 4180: a field with a comma, quote or line break is quoted,
/// its quotes doubled).
fn csv_line(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_and_comparisons() {
        let goals = vec![
            GoalChange {
                id: "a".into(),
                goal_cgy: 2900.0,
            },
            GoalChange {
                id: "b".into(),
                goal_cgy: 3100.0,
            },
        ];
        assert_eq!(Move::of(&goals, "a", 3000.0), Move::Tighten);
        assert_eq!(Move::of(&goals, "b", 3000.0), Move::Relax);
        assert_eq!(Move::of(&goals, "c", 3000.0), Move::Keep);
        assert_eq!(compare(Move::Keep, Move::Keep), "same");
        assert_eq!(compare(Move::Tighten, Move::Relax), "opposite");
        assert_eq!(compare(Move::Relax, Move::Keep), "moved, rule keeps");
        assert_eq!(compare(Move::Keep, Move::Tighten), "kept, rule moves");
        assert_eq!(patient_of("cervix-35/p01, iteration 3"), "cervix-35/p01");
    }

    /// A comparison such as "kept, rule moves" holds a comma: the line must still have one
    /// field per column, as a CSV reader (Python's csv module here) splits it.
    #[test]
    fn csv_lines_keep_their_fields() {
        let line = csv_line(&[
            "cervix-35/p01, iteration 1",
            "bladder-mean",
            "kept, rule moves",
            "say \"x\"",
        ]);
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import csv, sys; print(len(next(csv.reader(sys.stdin))), end='')",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(line.as_bytes())?;
                child.wait_with_output()
            })
            .expect("python3 runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "4", "{line}");
    }
}
