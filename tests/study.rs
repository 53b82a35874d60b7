//! `autoplan study`: a study file's arms on its patients, resumable, in parallel, with the
//! tables; an arm that cannot run here is skipped with its reason.

mod common;

use std::process::Command;

use common::{root, study_file, text};

#[test]
fn a_study_runs_its_arms_resumes_after_an_interruption_and_tabulates_them() {
    let tmp = tempfile::tempdir().unwrap();
    let study = study_file(
        tmp.path(),
        "small",
        "4,5",
        "published = \"CONFIGS/reference/wei2025-table3-manual.toml\"\n\
         table5 = [\"rule-based\", \"rule-reject\"]\n\
         [[arm]]\nname = \"rule-based\"\nlabel = \"Rule-based physicist\"\n\
         [[arm]]\nname = \"cloud\"\nprovider = \"CONFIGS/providers/openai-gpt-4o-mini.toml\"\n\
         [[arm]]\nname = \"rule-reject\"\nguard = \"reject\"\n\
         [[arm]]\nname = \"remote\"\ntps = \"CONFIGS/tps/local-gateway.toml\"\n",
    );
    let out = tmp.path().join("out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_autoplan"))
            .args([
                "study",
                study.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--jobs",
                "2",
                "--arcs",
                "1",
                "--beams-per-arc",
                "7",
                "--grid-mm",
                "5",
            ])
            .env_remove("OPENAI_API_KEY")
            .env_remove("AUTOPLAN_TPS_TOKEN")
            .current_dir(root())
            .output()
            .unwrap()
    };
    let o = run();
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("arm cloud: skipped") && s.contains("OPENAI_API_KEY"),
        "{s}"
    );
    assert!(
        s.contains("0 cases finished, 6 to plan with 2 job(s)"),
        "{s}"
    );
    // Every case of the arm whose TPS cannot be reached fails, is recorded, and the study
    // goes on without it.
    assert!(
        s.contains("remote p04: FAILED") && s.contains("4 cases planned"),
        "{s}"
    );
    assert!(out.join("remote/p05/failed.json").is_file());
    for arm in ["rule-based", "rule-reject"] {
        for p in ["p04", "p05"] {
            assert!(
                out.join(arm).join(p).join("case.json").is_file(),
                "{arm} {p}: {s}"
            );
            assert!(out.join(arm).join(p).join("dose.nrrd").is_file());
        }
    }
    assert!(!out.join("cloud").exists());
    let t3 = std::fs::read_to_string(out.join("table3.md")).unwrap();
    assert!(
        t3.contains("2 of 2 patients finished in every arm")
            && t3.contains("rule-reject mean ± std")
            && t3.contains("p vs rule-based")
            && t3.contains("published mean ± std")
            && t3.contains("| PTV D95 (Gy) |"),
        "{t3}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("## Skipped arms") && report.contains("**cloud**"),
        "{report}"
    );
    let t5 = std::fs::read_to_string(out.join("table5.md")).unwrap();
    assert!(
        t5.contains("mean relative difference") && t5.contains("| PTV D95 (Gy) |"),
        "{t5}"
    );
    for f in [
        "fig2-PTV-D95.png",
        "fig2-CI.svg",
        "fig4-rule-reject.png",
        "fig5-rule-reject.png",
    ] {
        assert!(out.join("figures").join(f).is_file(), "{f}: {report}");
    }
    assert!(
        report.contains("Figure 3, isodose slices of p04"),
        "{report}"
    );
    let arms = std::fs::read_to_string(out.join("arms.csv")).unwrap();
    assert_eq!(arms.lines().count(), 4, "{arms}");

    // An interrupted case (no marker, a stray file) is redone; finished ones are kept.
    let kept = out.join("rule-based/p04/case.json");
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    let broken = out.join("rule-reject/p05");
    std::fs::remove_file(broken.join("case.json")).unwrap();
    std::fs::write(broken.join("half-written.tmp"), "x").unwrap();
    let o = run();
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("3 cases finished, 3 to plan"), "{s}");
    assert!(broken.join("case.json").is_file() && !broken.join("half-written.tmp").exists());
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        before
    );
}

/// A deliverable study: every plan sequenced into arcs, its simulated QA run, Table 3 from the
/// deliverable plans and Table 4 from the gamma pass rates.
#[test]
fn a_deliverable_study_tabulates_the_simulated_qa() {
    let tmp = tempfile::tempdir().unwrap();
    let study = study_file(
        tmp.path(),
        "arcs",
        "4",
        "deliverable = true\ndose-angle-step = 20\n[[arm]]\nname = \"rule-based\"\n",
    );
    let out = tmp.path().join("out");
    let o = common::autoplan(&common::small_beams(&[
        "study",
        study.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
    ]));
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    let record = std::fs::read_to_string(out.join("rule-based/p04/case.json")).unwrap();
    assert!(
        record.contains("3%/3 mm") && record.contains("deliverable_metrics"),
        "{record}"
    );
    assert!(out.join("rule-based/p04/qa/qa.md").is_file());
    let t4 = std::fs::read_to_string(out.join("table4.md")).unwrap();
    assert!(
        t4.contains("| rule-based | 1 | 3%/3 mm |") && t4.contains("2%/2 mm"),
        "{t4}"
    );
    let t3 = std::fs::read_to_string(out.join("table3.md")).unwrap();
    assert!(t3.contains("The deliverable plans"), "{t3}");
}

/// An arm with `examples = "training"`: the study plans the example patients with the
/// rule-based physicist once, writes the pool into its output, and every case of the arm
/// prompts with it; a later run keeps the pool.
#[test]
fn a_study_builds_the_example_pool_of_its_arms_once() {
    let tmp = tempfile::tempdir().unwrap();
    let study = study_file(
        tmp.path(),
        "pool",
        "6",
        "example-patients = \"1\"\n[[arm]]\nname = \"rule-based\"\n\
         [[arm]]\nname = \"with-examples\"\nexamples = \"training\"\nn-examples = 1\n\
         selection = \"per-objective\"\n",
    );
    let out = tmp.path().join("out");
    let run = |patients: &str| {
        common::autoplan(&common::small_beams(&[
            "study",
            study.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--patients",
            patients,
        ]))
    };
    let o = run("6");
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    let pool = out.join("examples/training.json");
    assert!(
        s.contains("building the example pool") && s.contains("from the 1 patients"),
        "{s}"
    );
    let examples: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&pool).unwrap()).unwrap();
    assert!(!examples.is_empty(), "an empty pool");
    let transcript =
        std::fs::read_to_string(out.join("with-examples/p06/transcript.jsonl")).unwrap();
    let start: serde_json::Value =
        serde_json::from_str(transcript.lines().next().unwrap()).unwrap();
    let shown = start["examples"].as_str().unwrap_or_default();
    assert!(
        shown.contains("training.json (")
            && shown.ends_with("1 per prompt, per-objective selection"),
        "{start}"
    );
    let reference = std::fs::read_to_string(out.join("rule-based/p06/transcript.jsonl")).unwrap();
    assert!(!reference.lines().next().unwrap().contains("\"examples\""));
    // More patients later: the pool is kept, not planned again.
    let o = run("6,7");
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("kept from an earlier run"), "{s}");
}
