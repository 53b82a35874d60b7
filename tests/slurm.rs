//! `autoplan study --slurm` on a real single-node Slurm cluster (scripts/slurm/single-node.sh,
//! which scripts/test.sh starts and stops): a study of 2 patients x 2 arms submitted as a job
//! array, every case planned by its task, the tables built by the job that depends on the
//! array. Skipped where no cluster is configured, unless AUTOPLAN_REQUIRE_SLURM is set (as
//! scripts/test.sh sets it).

mod common;

use std::time::{Duration, Instant};

use common::{autoplan, small_beams, study_file, text};

#[test]
fn a_study_runs_as_a_slurm_job_array_and_a_dependent_collecting_job() {
    let configured = std::env::var_os("SLURM_CONF").is_some()
        && std::process::Command::new("sbatch")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !configured {
        assert!(
            std::env::var_os("AUTOPLAN_REQUIRE_SLURM").is_none(),
            "AUTOPLAN_REQUIRE_SLURM is set but no Slurm cluster is configured (SLURM_CONF, sbatch)"
        );
        eprintln!("no Slurm cluster configured: skipped (scripts/test.sh starts one)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let study = study_file(
        tmp.path(),
        "slurm-test",
        "4,5",
        "[[arm]]\nname = \"rule-based\"\n[[arm]]\nname = \"rule-reject\"\nguard = \"reject\"\n",
    );
    let out = tmp.path().join("out");
    let o = autoplan(&small_beams(&[
        "study",
        study.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--slurm",
    ]));
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("submitted 4 cases as job array"), "{s}");
    let cases = std::fs::read_to_string(out.join("slurm/cases.txt")).unwrap();
    assert_eq!(cases.lines().count(), 4, "{cases}");
    let started = Instant::now();
    while !out.join("report.md").is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no report after 10 minutes; logs: {:?}",
            std::fs::read_dir(out.join("slurm/logs")).map(|d| d.count())
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    for arm in ["rule-based", "rule-reject"] {
        for p in ["p04", "p05"] {
            assert!(
                out.join(arm).join(p).join("case.json").is_file(),
                "{arm} {p}"
            );
        }
    }
    let t3 = std::fs::read_to_string(out.join("table3.md")).unwrap();
    assert!(
        t3.contains("2 of 2 patients finished in every arm") && t3.contains("rule-reject"),
        "{t3}"
    );
    let collect = std::fs::read_to_string(out.join("slurm/logs/collect.out")).unwrap();
    assert!(collect.contains("4 cases finished, 0 to plan"), "{collect}");
    let task = std::fs::read_to_string(out.join("slurm/logs/case-0.out")).unwrap();
    assert!(
        task.contains("rule-based p04:") && task.contains("iterations"),
        "{task}"
    );
}
