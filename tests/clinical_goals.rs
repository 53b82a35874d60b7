//! A site written as one protocol file, judged by its clinical goals: the built-in C-shape
//! phantom (a concave target round a core, in the manner of TG-119) planned with
//! `configs/protocols/c-shape.toml`. With the study's criteria alone the loop stops while the
//! core's goal fails (the plan says so and exits 3); with the goals in the
//! termination it goes on until every must-goal passes.

use std::path::Path;
use std::process::Command;

mod common;

use common::{autoplan, root, text};

fn save_c_shape(dir: &Path) {
    let o = autoplan(&[
        "phantom",
        "--builtin",
        "c-shape",
        "--save",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

fn plan(patient: &Path, protocol: &Path, out: &Path) -> std::process::Output {
    plan_with(patient, protocol, out, &[])
}

/// `autoplan plan` with `extra` options.
fn plan_with(patient: &Path, protocol: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_autoplan"))
        .args(["plan", "--patient-dir"])
        .arg(patient)
        .arg("--protocol")
        .arg(protocol)
        .arg("--out")
        .arg(out)
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap()
}

/// `configs/protocols/c-shape.toml` with its termination replaced.
fn with_termination(dir: &Path, termination: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("configs/protocols/c-shape.toml")).unwrap();
    assert!(text.contains("termination = \"both\""));
    let path = dir.join(format!("c-shape-{termination}.toml"));
    std::fs::write(
        &path,
        text.replace(
            "termination = \"both\"",
            &format!("termination = \"{termination}\""),
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_study_criteria_alone_miss_the_core_goal_and_the_goals_termination_meets_it() {
    let dir = tempfile::tempdir().unwrap();
    let patient = dir.path().join("patient");
    save_c_shape(&patient);

    // The study's criteria: met after two plans, yet core D10 is 25.4 Gy against 25.
    let out = dir.path().join("study");
    let o = plan(&patient, &with_termination(dir.path(), "study"), &out);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "failed must-goals exit 3: {t}");
    assert!(t.contains("CriteriaMet after"), "{t}");
    assert!(
        t.contains("clinical must-goals failed") && t.contains("Core D10% <= 2500 cGy"),
        "{t}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| Core D10% <= 2500 cGy | must |"),
        "{report}"
    );
    assert!(report.contains("FAILED"), "{report}");
    assert!(
        report.contains("termination: Study; must-goals failed: 1"),
        "{report}"
    );

    // The shipped protocol (study criteria and goals): every must-goal passes.
    let out = dir.path().join("both");
    let o = plan(
        &patient,
        &root().join("configs/protocols/c-shape.toml"),
        &out,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("CriteriaMet"), "{t}");
    assert!(t.contains("every clinical must-goal passed"), "{t}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(!report.contains("FAILED"), "{report}");
    // The goals were judged after every optimization and are in the transcript.
    let transcript = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    let reports = transcript
        .lines()
        .filter(|l| l.contains("\"report\""))
        .count();
    let judged = transcript
        .lines()
        .filter(|l| l.contains("\"report\"") && l.contains("Core D10% <= 2500 cGy"))
        .count();
    assert!(
        reports >= 2 && judged == reports,
        "{reports} reports, {judged} judged"
    );
}

#[test]
fn a_body_of_the_wrong_role_is_refused_before_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let patient = dir.path().join("patient");
    save_c_shape(&patient);
    let text_of = std::fs::read_to_string(root().join("configs/protocols/c-shape.toml")).unwrap();
    let protocol = dir.path().join("core-as-body.toml");
    std::fs::write(
        &protocol,
        text_of.replace("[evaluation]\n", "[evaluation]\nbody = \"Core\"\n"),
    )
    .unwrap();
    let o = plan(&patient, &protocol, &dir.path().join("out"));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("evaluation.body") && t.contains("Core has role oar"),
        "{t}"
    );
    assert!(!dir.path().join("out/transcript.jsonl").exists());
}

/// The beam set-up is the protocol's `[beams]`: static beams at the listed angles with the
/// collimator turned, every gantry angle in report.md; the command line overrides the arcs of
/// a protocol with arcs, and refuses to turn static beams into arcs.
#[test]
fn the_protocols_beams_are_planned_and_reported_angle_by_angle() {
    let dir = tempfile::tempdir().unwrap();
    let patient = dir.path().join("patient");
    save_c_shape(&patient);
    let toml = std::fs::read_to_string(with_termination(dir.path(), "study")).unwrap();
    let arcs = "technique = \"arcs\"\narcs = 2\nbeams-per-arc = 18\nstart-deg = 0\n\
                stop-deg = 0             # equal to start: a full 360-degree arc\n\
                collimator-deg = 0\n";
    assert!(
        toml.contains(arcs),
        "the [beams] section of c-shape.toml moved"
    );
    let static_beams = dir.path().join("c-shape-static.toml");
    std::fs::write(
        &static_beams,
        toml.replace(
            arcs,
            "technique = \"static\"\nangles-deg = [0, 40, 80, 120, 160, 200, 240, 280, 320]\n\
             collimator-deg = 90\n",
        ),
    )
    .unwrap();
    let out = dir.path().join("static");
    let o = plan(&patient, &static_beams, &out);
    let t = text(&o);
    assert!(
        t.contains("beams: 9 static beams, collimator 90 deg, 6 MV, 5 mm beamlets"),
        "{t}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("## Beams")
            && report.contains("| static | 0, 40, 80, 120, 160, 200, 240, 280, 320 |"),
        "{report}"
    );

    // The command line's arcs replace the protocol's.
    let out = dir.path().join("one-arc");
    let o = plan_with(
        &patient,
        &with_termination(dir.path(), "study"),
        &out,
        &["--arcs", "1", "--beams-per-arc", "4"],
    );
    let t = text(&o);
    assert!(
        t.contains("beams: 1 full arc(s) x 4 beams (4 beams)"),
        "{t}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| 1 | 0, 90, 180, 270 |"), "{report}");

    // ...but do not turn static beams into arcs.
    let o = plan_with(
        &patient,
        &static_beams,
        &dir.path().join("refused"),
        &["--arcs", "1"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("c-shape-static.toml")
            && t.contains("beams.technique")
            && t.contains("9 static beams"),
        "{t}"
    );
}

/// Every shipped protocol reads, and says which beams it plans with.
#[test]
fn every_shipped_protocol_reads_with_its_beams() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("configs/protocols")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let p = tps_api::Protocol::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\n[beams]\n"),
            "{}: no [beams]",
            path.display()
        );
        assert!(p.beams.beam_count() > 0);
        seen += 1;
    }
    assert!(seen >= 4, "{seen} protocols");
    let cervix = tps_api::Protocol::load(&root().join("configs/protocols/cervix.toml")).unwrap();
    assert_eq!(
        cervix.beams,
        tps_api::Beams {
            energy_mv: Some(6.0),
            ..Default::default()
        }
    );
}
