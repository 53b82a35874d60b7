//! End-to-end tests of the `autoplan` binary: the commands a user runs, on the shipped
//! configuration files.

use std::path::Path;
use std::process::Command;

mod common;

use common::{
    autoplan, capped_protocol, hold_lock, plan_command, root, save_phantom, small_beams, text,
};

/// A PNG's width and height, read from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn phantom_renders_saves_and_reloads_a_patient() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("png");
    let save = tmp.path().join("p07");
    let o = autoplan(&[
        "phantom",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patient",
        "7",
        "--protocol",
        "configs/protocols/cervix.toml",
        "--png",
        png.to_str().unwrap(),
        "--save",
        save.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for name in [
        "PTV",
        "Bladder",
        "Rectum",
        "Bag_Bowel",
        "SpinalCord",
        "BoneMarrow",
        "Femur_Head_L",
        "R2",
        "R3",
        "R4",
    ] {
        assert!(out.contains(name), "table lacks {name}:\n{out}");
    }
    assert!(out.contains("cervix-35/p07 (test set)"), "{out}");
    for plane in ["axial", "sagittal", "coronal"] {
        let (w, h) = png_size(&png.join(format!("p07-{plane}.png")));
        assert!(w > 400 && h > 300, "{plane} is {w}x{h}");
    }
    // The saved directory loads back with the same table.
    let o2 = autoplan(&["inspect", save.to_str().unwrap()]);
    let out2 = text(&o2);
    assert!(o2.status.success(), "{out2}");
    let ptv_line = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("PTV "))
            .map(str::to_string)
    };
    assert_eq!(ptv_line(&out), ptv_line(&out2));
    // A truncated CT is refused with the file named, not a panic.
    let ct = save.join("ct.nrrd");
    let bytes = std::fs::read(&ct).unwrap();
    std::fs::write(&ct, &bytes[..bytes.len() / 2]).unwrap();
    let o3 = autoplan(&["inspect", save.to_str().unwrap()]);
    let out3 = text(&o3);
    assert_eq!(o3.status.code(), Some(1), "{out3}");
    assert!(
        out3.contains("ct.nrrd") && out3.contains("corrupt"),
        "{out3}"
    );
    assert!(!out3.contains("panicked"), "{out3}");
}

#[test]
fn bad_cohort_file_names_file_field_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(root().join("configs/cohorts/cervix-35.toml")).unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        spec.replace("ptv-margin-mm = 7.0", "ptv-margin-mm = -5.0"),
    )
    .unwrap();
    let o = autoplan(&[
        "phantom",
        "--cohort",
        bad.to_str().unwrap(),
        "--patient",
        "1",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("bad.toml") && out.contains("anatomy.ptv-margin-mm") && out.contains("-5"),
        "{out}"
    );
    std::fs::write(&bad, spec.replace("seed =", "sed =")).unwrap();
    let out = text(&autoplan(&[
        "phantom",
        "--cohort",
        bad.to_str().unwrap(),
        "--patient",
        "1",
    ]));
    assert!(out.contains("bad.toml") && out.contains("sed"), "{out}");
    let out = text(&autoplan(&[
        "phantom",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patient",
        "36",
    ]));
    assert!(
        out.contains("patient") && out.contains("36") && out.contains("1 to 35"),
        "{out}"
    );
}

#[test]
fn protocol_naming_an_unknown_structure_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let proto = std::fs::read_to_string(root().join("configs/protocols/cervix.toml")).unwrap();
    let bad = tmp.path().join("proto.toml");
    std::fs::write(
        &bad,
        proto.replacen("source = \"PTV\"", "source = \"PTV_High\"", 1),
    )
    .unwrap();
    let o = autoplan(&[
        "phantom",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patient",
        "2",
        "--protocol",
        bad.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("proto.toml")
            && out.contains("auxiliary[0].source")
            && out.contains("PTV_High"),
        "{out}"
    );
}

#[test]
fn eval_reports_the_protocol_metrics_of_a_dose() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p02");
    // In a directory that does not exist yet: the command makes it.
    let dose = tmp.path().join("plan/dose.nrrd");
    save_phantom(2, &patient);
    let o = autoplan(&[
        "synthetic-dose",
        "--patient",
        patient.to_str().unwrap(),
        "--protocol",
        "configs/protocols/cervix.toml",
        "--out",
        dose.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = tmp.path().join("metrics.csv");
    let png = tmp.path().join("png");
    let o = autoplan(&[
        "eval",
        "--patient",
        patient.to_str().unwrap(),
        "--dose",
        dose.to_str().unwrap(),
        "--protocol",
        "configs/protocols/cervix.toml",
        "--mu",
        "812.5",
        "--csv",
        csv.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let table = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(table.lines().count(), 16, "{table}");
    // The synthetic dose is the prescription x 1.03 inside the PTV only: CI = 1.
    assert!(table.contains("CI,1.0000,"), "{table}");
    assert!(table.contains("MU,812.5000,MU"), "{table}");
    for f in [
        "isodose-axial.png",
        "isodose-sagittal.png",
        "isodose-coronal.png",
        "dvh.png",
        "dvh.svg",
    ] {
        assert!(png.join(f).exists(), "{f} missing");
    }
    // A dose on another grid is refused with both grids named.
    let other = tmp.path().join("other.nrrd");
    let g = tps_api::Grid::new([4, 4, 4], [2.5; 3], [0.0; 3]).unwrap();
    patient_model::nrrd::write_f32(&other, &g, &[0.0; 64]).unwrap();
    let o = autoplan(&[
        "eval",
        "--patient",
        patient.to_str().unwrap(),
        "--dose",
        other.to_str().unwrap(),
        "--protocol",
        "configs/protocols/cervix.toml",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("other.nrrd") && out.contains("differs from the patient's CT grid"),
        "{out}"
    );
}

#[test]
fn dose_of_uniform_arcs_is_computed_scaled_and_drawn() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p03");
    save_phantom(3, &patient);
    let dose = tmp.path().join("dose.nrrd");
    let png = tmp.path().join("png");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "dose",
            "--patient",
            patient.to_str().unwrap(),
            "--protocol",
            "configs/protocols/cervix.toml",
            "--arcs",
            "1",
            "--beams-per-arc",
            "8",
            "--grid-mm",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        autoplan(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = run(&[
        "--out",
        dose.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("8 beams") && out.contains("D95 = 3600 cGy"),
        "{out}"
    );
    assert!(png.join("dose-axial.png").exists() && dose.exists());
    // The written dose evaluates to D95 = 36 Gy.
    let o = autoplan(&[
        "eval",
        "--patient",
        patient.to_str().unwrap(),
        "--dose",
        dose.to_str().unwrap(),
        "--protocol",
        "configs/protocols/cervix.toml",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let d95: f64 = out
        .lines()
        .find(|l| l.starts_with("PTV D95"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!((d95 - 3600.0).abs() < 1.0, "{out}");
    // Bad inputs.
    let out = text(&run(&["--bixel-mm", "0"]));
    assert!(
        out.contains("bixel-mm") && out.contains("2 to 20 mm"),
        "{out}"
    );
    let out = text(&run(&["--fluence", "optimized"]));
    assert!(
        out.contains("--fluence") && out.contains("uniform"),
        "{out}"
    );
    let cal = tmp.path().join("cal.toml");
    std::fs::write(
        &cal,
        "name = \"bad\"\npoints = [[-1000.0, 0.0], [0.0, 1.0], [500.0, 0.5]]\n",
    )
    .unwrap();
    let out = text(&run(&["--calibration", cal.to_str().unwrap()]));
    assert!(
        out.contains("cal.toml") && out.contains("points[2]") && out.contains("monotone"),
        "{out}"
    );
}

#[test]
fn optimize_reports_objectives_normalizes_and_writes_the_dose() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    let out = tmp.path().join("plan");
    // One 7-beam arc on a 5 mm grid keeps the test short.
    let optimize = |extra: &[&str]| {
        let mut args = vec![
            "optimize",
            "--patient",
            patient.to_str().unwrap(),
            "--protocol",
            "configs/protocols/cervix.toml",
            "--arcs",
            "1",
            "--beams-per-arc",
            "7",
            "--grid-mm",
            "5",
        ];
        args.extend_from_slice(extra);
        autoplan(&args)
    };
    let o = optimize(&[
        "--goal",
        "bladder-mean=2500",
        "--out",
        out.to_str().unwrap(),
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    for id in ["ptv-min", "ptv-d99", "bladder-mean", "r4-max"] {
        assert!(s.contains(&format!("| {id} |")), "report lacks {id}: {s}");
    }
    assert!(
        s.contains("| bladder-mean | Bladder | mean dose | 5 | 2500 |"),
        "{s}"
    );
    assert!(
        s.contains("normalized by") && s.contains("MU per fraction"),
        "{s}"
    );
    assert!(
        out.join("dose.nrrd").exists()
            && out.join("report.md").exists()
            && out.join("optimized-axial.png").exists()
    );
    let o = optimize(&["--goal", "kidney=100"]);
    let s = text(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.contains("kidney")
            && s.contains("no objective has this id")
            && s.contains("bladder-mean"),
        "{s}"
    );
}

#[test]
fn plan_runs_the_loop_and_writes_transcript_dose_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    // The cervix protocol as a file with a 3-iteration cap keeps the test short.
    let protocol = capped_protocol(tmp.path(), "cervix", 3);
    let cervix = std::fs::read_to_string(root().join("configs/protocols/cervix.toml")).unwrap();
    let out = tmp.path().join("plan");
    let o = autoplan(&small_beams(&[
        "plan",
        "--patient-dir",
        patient.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("advisor rule-based"), "{s}");
    for n in 1..=3 {
        assert!(s.contains(&format!("iteration  {n}/3: PTV D95")), "{s}");
    }
    for f in [
        "transcript.jsonl",
        "report.md",
        "metrics.csv",
        "dose.nrrd",
        "dvh.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing: {s}");
    }
    let transcript = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    let events: Vec<&str> = transcript
        .lines()
        .map(|l| {
            l.split("\"event\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(events.first(), Some(&"start"));
    assert_eq!(events.last(), Some(&"end"));
    assert!(events.iter().filter(|e| **e == "report").count() >= 1);
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(
        metrics.contains("Bladder D50,") && metrics.contains("MU,"),
        "{metrics}"
    );

    // A few-shot pool from one patient's plan, then a plan that uses it.
    let pool = tmp.path().join("pool.json");
    let o = autoplan(&small_beams(&[
        "examples",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patients",
        "4",
        "--protocol",
        protocol.to_str().unwrap(),
        "--out",
        pool.to_str().unwrap(),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let pool_text = std::fs::read_to_string(&pool).unwrap();
    assert!(
        pool_text.contains("cervix-35/p04, iteration 1"),
        "{pool_text}"
    );
    let o = autoplan(&small_beams(&[
        "plan",
        "--patient-dir",
        patient.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
        "--examples",
        pool.to_str().unwrap(),
        "--selection",
        "nearest",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    // Three examples asked for (the default), two in the pool: said, not hidden.
    assert!(
        text(&o).contains("holds 2 examples, so each prompt shows 2"),
        "{}",
        text(&o)
    );
    // The pool belongs to the cervix protocol: another site's protocol refuses it, and the
    // agreement measurement refuses more few-shot examples than the pool holds.
    let o = autoplan(&small_beams(&[
        "plan",
        "--patient-dir",
        patient.to_str().unwrap(),
        "--protocol",
        "configs/protocols/prostate.toml",
        "--examples",
        pool.to_str().unwrap(),
        "--out",
        tmp.path().join("prostate").to_str().unwrap(),
    ]));
    let s = text(&o);
    assert!(!o.status.success() && s.contains("another protocol"), "{s}");
    let o = autoplan(&[
        "agreement",
        "--provider",
        "configs/providers/rule-based.toml",
        "--examples",
        pool.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
        "--n-examples",
        "5",
        "--out",
        tmp.path().join("agreement.csv").to_str().unwrap(),
    ]);
    let s = text(&o);
    assert!(
        !o.status.success() && s.contains("--n-examples 5") && s.contains("at most 0"),
        "{s}"
    );

    // Bad input: a protocol without [planning], an unknown provider kind.
    let bare = tmp.path().join("bare.toml");
    let cut = cervix.split("[planning]").collect::<Vec<_>>();
    let rest = cut[1].split_once("[[objectives]]").unwrap().1;
    std::fs::write(&bare, format!("{}[[objectives]]{rest}", cut[0])).unwrap();
    let provider = tmp.path().join("p.toml");
    std::fs::write(&provider, "kind = \"telepathy\"\n").unwrap();
    for (proto, prov, expect) in [
        (bare.to_str().unwrap(), None, "[planning] is missing"),
        (
            protocol.to_str().unwrap(),
            Some(provider.to_str().unwrap()),
            "unknown provider kind",
        ),
    ] {
        let mut args = vec![
            "plan",
            "--patient-dir",
            patient.to_str().unwrap(),
            "--protocol",
            proto,
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(p) = prov {
            args.extend(["--provider", p]);
        }
        let o = autoplan(&args);
        assert!(!o.status.success());
        assert!(text(&o).contains(expect), "{}", text(&o));
    }
}

/// `--deliverable` sequences the final plan into arcs: control points within the machine's
/// limits, their dose and metrics beside the fluence plan's, MU from the control points; `qa`
/// then simulates its delivery and compares the doses with gamma.
#[test]
fn plan_deliverable_writes_control_points_their_dose_the_comparison_and_simulated_qa() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    let protocol = capped_protocol(tmp.path(), "cervix", 2);
    let out = tmp.path().join("plan");
    let o = autoplan(&small_beams(&[
        "plan",
        "--patient-dir",
        patient.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
        "--deliverable",
        "--dose-angle-step",
        "20",
        "--dicom",
        "--out",
        out.to_str().unwrap(),
    ]));
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("0 violation(s)"), "{s}");
    for f in [
        "deliverable.json",
        "deliverable.md",
        "deliverable-metrics.csv",
        "deliverable-dose.nrrd",
        "deliverable-dose.json",
        "dvh-deliverable.png",
        "apertures.png",
        "isodose-deliverable-axial.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing: {s}");
    }
    // One arc of 7 sectors of 360/7 degrees, control points at most 2 degrees apart.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("deliverable.json")).unwrap())
            .unwrap();
    let arcs = plan["arcs"].as_array().unwrap();
    assert_eq!(arcs.len(), 1);
    let cps = arcs[0]["control_points"].as_array().unwrap();
    assert_eq!(cps.len(), 7 * 26 + 1);
    let mu = cps.last().unwrap()["cumulative_mu"].as_f64().unwrap();
    let metrics = std::fs::read_to_string(out.join("deliverable-metrics.csv")).unwrap();
    let reported: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("MU,"))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((reported - mu).abs() < 1e-3 * mu, "{reported} vs {mu}");
    let md = std::fs::read_to_string(out.join("deliverable.md")).unwrap();
    assert!(md.contains("Machine check: none"), "{md}");
    assert!(md.contains("| PTV D95 |"), "{md}");

    // The DICOM export (--dicom) read back by import-dicom: the same structures, rings
    // included, and the deliverable dose, whose metrics by `eval` are the plan's.
    for f in ["RS.dcm", "RD.dcm", "RP.dcm", "CT.0001.dcm"] {
        assert!(out.join("dicom").join(f).is_file(), "{f}: {s}");
    }
    let imported = tmp.path().join("imported");
    let o = autoplan(&[
        "import-dicom",
        out.join("dicom").to_str().unwrap(),
        "--out",
        imported.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    let report = std::fs::read_to_string(imported.join("import.md")).unwrap();
    for name in [
        "| PTV | PTV | target |",
        "| R2 | R2 | auxiliary |",
        "| External | External | external |",
    ] {
        assert!(report.contains(name), "{name}: {report}");
    }
    let csv = tmp.path().join("imported-metrics.csv");
    let o = autoplan(&[
        "eval",
        "--patient",
        imported.to_str().unwrap(),
        "--dose",
        imported.join("rtdose.nrrd").to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let value = |text: &str, metric: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{metric},")))
            .and_then(|l| l.split(',').next())
            .unwrap_or_else(|| panic!("{metric} in {text}"))
            .parse()
            .unwrap()
    };
    let evaluated = std::fs::read_to_string(&csv).unwrap();
    for metric in ["PTV D95", "PTV D2", "Bladder D50", "CI"] {
        let (a, b) = (value(&metrics, metric), value(&evaluated, metric));
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(1.0),
            "{metric}: plan {a}, imported {b}"
        );
    }

    // Simulated QA: without errors the recomputed dose is the planned one (every point
    // passes); with the default errors the pass rates are reported as a simulation.
    let qa = |extra: &[&str], dir: &str| {
        let mut args = vec![
            "qa",
            out.to_str().unwrap(),
            "--patient-dir",
            patient.to_str().unwrap(),
            "--protocol",
            protocol.to_str().unwrap(),
        ];
        // The plan's 20-degree bins come from its deliverable-dose.json.
        args.extend_from_slice(extra);
        let d = tmp.path().join(dir);
        args.extend(["--out", d.to_str().unwrap()]);
        let o = autoplan(&small_beams(&args));
        (o, d)
    };
    let zero = [
        "--leaf-random-mm",
        "0",
        "--leaf-bank-mm",
        "0",
        "--gantry-deg",
        "0",
        "--segment-mu-percent",
        "0",
        "--output-percent",
        "0",
    ];
    let (o, d) = qa(&zero, "qa0");
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    let csv = std::fs::read_to_string(d.join("qa.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let rate: f64 = line.split(',').nth(6).unwrap().parse().unwrap();
        assert_eq!(rate, 100.0, "{csv}");
    }
    let (o, d) = qa(&[], "qa1");
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("simulated QA") && s.contains("3%/3 mm: pass"),
        "{s}"
    );
    let md = std::fs::read_to_string(d.join("qa.md")).unwrap();
    assert!(md.contains("A simulation, not a measurement"), "{md}");
    assert!(d.join("qa-delivered-dose.nrrd").is_file());
    // The simulated delivery's dose must be binned as the planned dose was.
    let (o, _) = qa(&["--dose-angle-step", "10"], "qa2");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("the planned dose was computed in 20-degree bins"),
        "{}",
        text(&o)
    );
    // A directory without a deliverable plan: the file and how to make it are named.
    let o = autoplan(&[
        "qa",
        tmp.path().to_str().unwrap(),
        "--patient-dir",
        patient.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("deliverable.json (write it with autoplan plan --deliverable)"),
        "{}",
        text(&o)
    );

    // A remote TPS delivers its own plans: refused before anything is planned.
    let o = autoplan(&[
        "plan",
        "--patient-dir",
        patient.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
        "--tps",
        "configs/tps/local-gateway.toml",
        "--deliverable",
        "--out",
        tmp.path().join("remote").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--deliverable sequences the native TPS"),
        "{}",
        text(&o)
    );
}

/// A study with `--deliverable` keeps each deliverable plan's metrics in plans.csv and sets
/// their summary beside the fluence plans' in study.md.
#[test]
fn a_study_with_deliverable_plans_tabulates_them() {
    let tmp = tempfile::tempdir().unwrap();
    let protocol = capped_protocol(tmp.path(), "cervix", 1);
    let out = tmp.path().join("study");
    let o = autoplan(&small_beams(&[
        "plan",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patients",
        "4",
        "--protocol",
        protocol.to_str().unwrap(),
        "--deliverable",
        "--dose-angle-step",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]));
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    let csv = std::fs::read_to_string(out.join("plans.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains(",MU,deliverable ") && header.ends_with(",deliverable MU"),
        "{header}"
    );
    let cells = csv.lines().nth(1).unwrap().split(',').count();
    assert_eq!(cells, header.split(',').count(), "{csv}");
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(md.contains("## Deliverable plans"), "{md}");
    assert!(
        md.contains("deliverable, rule-based physicist (n = 1)"),
        "{md}"
    );
    assert!(out.join("p04/deliverable.json").is_file());
}

#[test]
fn plan_with_patients_runs_a_resumable_study() {
    let tmp = tempfile::tempdir().unwrap();
    let protocol = capped_protocol(tmp.path(), "cervix", 2);
    let out = tmp.path().join("study");
    let args = small_beams(&[
        "plan",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patients",
        "4,5",
        "--protocol",
        protocol.to_str().unwrap(),
        "--reference",
        "configs/reference/wei2025-table3-manual.toml",
        "--out",
        out.to_str().unwrap(),
    ]);
    let o = autoplan(&args);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("study of 2 patients of cervix-35: 0 already"),
        "{s}"
    );
    assert!(s.contains("[2/2] patient 5:"), "{s}");
    let csv = std::fs::read_to_string(out.join("plans.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[0].starts_with("patient,criteria met,iterations,"),
        "{csv}"
    );
    assert!(lines[0].ends_with(",MU"), "{csv}");
    assert!(
        lines[1].starts_with("p04,") && lines[2].starts_with("p05,"),
        "{csv}"
    );
    for l in &lines[1..] {
        let cells: Vec<&str> = l.split(',').collect();
        let iterations: f64 = cells[2].parse().unwrap();
        assert!((1.0..=2.0).contains(&iterations), "{l}");
    }
    assert!(out.join("p04/transcript.jsonl").is_file());
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(md.contains("- criteria met: "), "{md}");
    assert!(md.contains("| Bladder D50 Gy |"), "{md}");
    assert!(md.contains("Wei et al. 2025, Table 3"), "{md}");

    // A rerun plans nothing again; a patient outside the cohort is refused by number.
    let o = autoplan(&args);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("2 already in") && s.contains("0 to plan"), "{s}");
    assert!(!s.contains("iteration  1/2"), "{s}");
    let mut bad = args.clone();
    bad[4] = "4,40";
    assert_eq!(args[3], "--patients");
    let o = autoplan(&bad);
    assert!(!o.status.success());
    assert!(text(&o).contains("patient 40 is not in"), "{}", text(&o));
}

/// A second site needs a protocol file and a phantom, no planner code: the prostate protocol
/// plans a patient of the prostate cohort through the same command.
#[test]
fn prostate_site_plans_with_its_protocol_file() {
    let tmp = tempfile::tempdir().unwrap();
    let protocol = capped_protocol(tmp.path(), "prostate", 2);
    let out = tmp.path().join("plan");
    let o = autoplan(&small_beams(&[
        "plan",
        "--cohort",
        "configs/cohorts/prostate-12.toml",
        "--patient",
        "3",
        "--protocol",
        protocol.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("planning prostate-12/p03"), "{s}");
    assert!(s.contains("iteration  1/2: PTV D95"), "{s}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    for m in ["Rectum V4050cGy,", "Bladder D50,", "CI,", "MU,"] {
        assert!(metrics.contains(m), "{m}: {metrics}");
    }
    // The evaluation's D95 is the prescription after the CT-grid normalization.
    let d95: f64 = metrics
        .lines()
        .find(|l| l.starts_with("PTV D95,"))
        .and_then(|l| l.split(',').nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!((d95 - 6000.0).abs() < 1.0, "PTV D95 {d95}");
}

#[test]
fn ctrl_c_stops_a_plan_after_its_step_with_the_transcript_ended_and_the_plan_written() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    let out = tmp.path().join("plan");
    let mut child = Command::new(env!("CARGO_BIN_EXE_autoplan"))
        .args(small_beams(&[
            "plan",
            "--patient-dir",
            patient.to_str().unwrap(),
            "--protocol",
            "configs/protocols/cervix.toml",
            "--out",
            out.to_str().unwrap(),
        ]))
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // Interrupt as soon as the first report is shown (the loop is then advising or
    // optimizing the second plan, the step it must finish).
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "ended early: {seen}"
        );
        seen += &line;
        if line.starts_with("iteration  1/20") {
            break;
        }
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    let s = format!("{seen}{rest}{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(130), "{s}");
    assert!(s.contains("stopping after the current step"), "{s}");
    assert!(!s.contains("iteration  3/20"), "the plan went on: {s}");
    let transcript = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    let last = transcript.lines().last().unwrap();
    assert!(
        last.contains("\"event\":\"end\"") && last.contains("\"reason\":\"Interrupted\""),
        "{last}"
    );
    // The last good plan is normalized and written.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("ended: Interrupted"), "{report}");
    for f in ["dose.nrrd", "metrics.csv", "dvh.png"] {
        assert!(out.join(f).is_file(), "{f} missing: {s}");
    }
}

#[test]
fn a_closed_stdout_stops_only_the_printing() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    let protocol = capped_protocol(tmp.path(), "cervix", 1);
    let out = tmp.path().join("plan");
    // `autoplan plan ... | head -0`: the reader is gone before the first line.
    let mut child = plan_command(&patient, &protocol, &out, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("stdout was closed"), "{err}");
    for f in ["transcript.jsonl", "report.md", "metrics.csv", "dose.nrrd"] {
        assert!(out.join(f).is_file(), "{f} missing: {err}");
    }
    let transcript = std::fs::read_to_string(out.join("transcript.jsonl")).unwrap();
    assert!(
        transcript
            .lines()
            .last()
            .unwrap()
            .contains("\"event\":\"end\"")
    );
}

#[test]
fn a_second_run_into_a_locked_output_directory_stops_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("plan");
    // The lock of a run that is alive: this test's own process, on this host.
    hold_lock(&out);
    let o = autoplan(&[
        "plan",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patient",
        "4",
        "--protocol",
        "configs/protocols/cervix.toml",
        "--out",
        out.to_str().unwrap(),
    ]);
    let s = text(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.contains("in use by autoplan PID") && s.contains(&std::process::id().to_string()),
        "{s}"
    );
    assert!(
        !out.join("transcript.jsonl").exists(),
        "it wrote into the locked directory"
    );
    assert!(
        out.join(".autoplan.lock").exists(),
        "the holder's lock was removed"
    );
}

#[test]
fn eval_refuses_mu_that_is_not_a_positive_number() {
    for mu in ["-5", "NaN", "0"] {
        let o = autoplan(&[
            "eval",
            "--patient",
            "nowhere",
            "--dose",
            "nowhere.nrrd",
            "--protocol",
            "configs/protocols/cervix.toml",
            &format!("--mu={mu}"),
        ]);
        let s = text(&o);
        assert!(!o.status.success(), "{mu}: {s}");
        assert!(s.contains("--mu") && s.contains("positive"), "{mu}: {s}");
    }
}

#[test]
fn a_plan_made_by_the_fallback_is_not_reported_as_the_advisors() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    let protocol = capped_protocol(tmp.path(), "cervix", 3);
    // An endpoint nobody listens on: every advice fails and the rule-based physicist stands in.
    let provider = tmp.path().join("unreachable.toml");
    std::fs::write(
        &provider,
        "kind = \"openai-compatible\"\nmodel = \"m\"\nendpoint = \"http://127.0.0.1:9/v1\"\n\
         timeout-s = 5\nretries = 0\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = tmp.path().join(format!("plan{}", extra.len()));
        let mut args = small_beams(&[
            "plan",
            "--patient-dir",
            patient.to_str().unwrap(),
            "--protocol",
            protocol.to_str().unwrap(),
            "--provider",
            provider.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        args.extend(extra);
        (autoplan(&args), out)
    };
    let (o, out) = run(&[]);
    let s = text(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.contains("2 of 2 advice steps were made by the rule-based fallback")
            && s.contains("not the advisor's")
            && s.contains("--allow-fallback"),
        "{s}"
    );
    // The outputs are written and say so too.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("advice steps made by the rule-based fallback: 2 of 2"),
        "{report}"
    );
    let (o, _) = run(&["--allow-fallback"]);
    assert!(o.status.success(), "{}", text(&o));
    // A study with any plan made partly by the fallback says so and fails after its tables.
    let study = tmp.path().join("study");
    let o = autoplan(&small_beams(&[
        "plan",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patients",
        "4",
        "--protocol",
        protocol.to_str().unwrap(),
        "--provider",
        provider.to_str().unwrap(),
        "--out",
        study.to_str().unwrap(),
    ]));
    let s = text(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(s.contains("the study is not all"), "{s}");
    let md = std::fs::read_to_string(study.join("study.md")).unwrap();
    assert!(
        md.contains("**Not all the advisor's:**") && md.contains("p04 (2 of 2)"),
        "{md}"
    );
}

#[test]
fn absurd_beam_counts_are_refused_before_any_memory_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    let o = autoplan(&[
        "plan",
        "--patient-dir",
        patient.to_str().unwrap(),
        "--protocol",
        "configs/protocols/cervix.toml",
        "--arcs",
        "100000",
        "--beams-per-arc",
        "100000",
        "--out",
        tmp.path().join("plan").to_str().unwrap(),
    ]);
    let s = text(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.contains("100000 x 100000") && s.contains("at most 8 arcs of 180 beams"),
        "{s}"
    );
}

/// Numeric flags outside their ranges stop the command before any work, naming the flag, the
/// value and the range (a 1 m beamlet once aborted on a 93 GB allocation; a synthetic dose
/// 10^30 times the prescription was written).
#[test]
fn numeric_flags_outside_their_ranges_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let patient = tmp.path().join("p04");
    save_phantom(4, &patient);
    let p = patient.to_str().unwrap();
    let proto = "configs/protocols/cervix.toml";
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let nrrd = tmp.path().join("s.nrrd");
    let n = nrrd.to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (
            vec![
                "dose",
                "--patient",
                p,
                "--protocol",
                proto,
                "--bixel-mm",
                "1e6",
            ],
            1,
            vec!["bixel-mm", "1000000", "2 to 20 mm"],
        ),
        (
            vec![
                "optimize",
                "--patient",
                p,
                "--protocol",
                proto,
                "--smoothing",
                "1e300",
            ],
            1,
            vec!["smoothing", "0 to 1 per MU^2"],
        ),
        (
            vec![
                "synthetic-dose",
                "--patient",
                p,
                "--protocol",
                proto,
                "--out",
                n,
                "--hot",
                "1e30",
            ],
            1,
            vec!["hot", "1e30", "at most 2"],
        ),
        (
            vec![
                "synthetic-dose",
                "--patient",
                p,
                "--protocol",
                proto,
                "--out",
                n,
                "--falloff-mm",
                "1e9",
            ],
            1,
            vec!["falloff-mm", "1000000000.0", "at most 500 mm"],
        ),
        (
            vec![
                "plan",
                "--patient-dir",
                p,
                "--protocol",
                proto,
                "--out",
                o,
                "--max-advisor-failures",
                "0",
            ],
            2,
            vec!["--max-advisor-failures", "0", "1..=1000"],
        ),
        (
            vec![
                "plan",
                "--patient-dir",
                p,
                "--protocol",
                proto,
                "--out",
                o,
                "--n-examples",
                "1000000",
            ],
            2,
            vec!["--n-examples", "1000000", "0..=20"],
        ),
    ];
    for (args, code, tokens) in cases {
        let r = autoplan(&args);
        let s = text(&r);
        assert_eq!(r.status.code(), Some(code), "{args:?}: {s}");
        for t in tokens {
            assert!(s.contains(t), "{args:?}: no {t:?} in {s}");
        }
    }
    assert!(!nrrd.exists() && !out.exists());
}

#[test]
fn gamma_compares_two_dose_files_and_writes_csv_and_map() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tps_api::Grid::new([30, 30, 20], [2.0; 3], [0.0; 3]).unwrap();
    let field = |shift: f64| {
        let mut v = Vec::new();
        for k in 0..20 {
            for j in 0..30 {
                for i in 0..30 {
                    let (x, y, z) = (2.0 * i as f64 - shift, 2.0 * j as f64, 2.0 * k as f64);
                    let r2 = (x - 30.0).powi(2) + (y - 30.0).powi(2) + (z - 20.0).powi(2);
                    v.push((3600.0 * (-r2 / 200.0).exp()) as f32);
                }
            }
        }
        v
    };
    let (a, b) = (tmp.path().join("a.nrrd"), tmp.path().join("b.nrrd"));
    patient_model::nrrd::write_f32(&a, &g, &field(0.0)).unwrap();
    patient_model::nrrd::write_f32(&b, &g, &field(1.0)).unwrap();
    let (csv, map) = (tmp.path().join("gamma.csv"), tmp.path().join("gamma.nrrd"));
    let o = autoplan(&[
        "gamma",
        "--reference",
        a.to_str().unwrap(),
        "--evaluated",
        b.to_str().unwrap(),
        "--criteria",
        "3/3,0.5%/0.5mm",
        "--csv",
        csv.to_str().unwrap(),
        "--map",
        map.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // A 1 mm shift passes 3%/3 mm everywhere and fails part of 0.5%/0.5 mm.
    assert!(out.contains("3%/3 mm: pass 100.00 %"), "{out}");
    assert!(out.contains("0.5%/0.5 mm: pass"), "{out}");
    let table = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[1].starts_with("3,3,10,"), "{table}");
    let tight: f64 = rows[2].split(',').nth(6).unwrap().parse().unwrap();
    assert!(tight > 5.0 && tight < 95.0, "{table}");
    let (mg, voxels) = patient_model::nrrd::read(&map).unwrap();
    assert_eq!(mg, g);
    let patient_model::nrrd::Voxels::F32(gv) = voxels else {
        panic!("gamma map is not float")
    };
    assert!(gv.iter().any(|v| v.is_nan()) && gv.iter().any(|v| *v > 0.0));
    // Doses on different grids are refused with both grids named.
    let other = tmp.path().join("other.nrrd");
    let og = tps_api::Grid::new([4, 4, 4], [2.5; 3], [0.0; 3]).unwrap();
    patient_model::nrrd::write_f32(&other, &og, &[1.0; 64]).unwrap();
    let o = autoplan(&[
        "gamma",
        "--reference",
        a.to_str().unwrap(),
        "--evaluated",
        other.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("other.nrrd") && out.contains("one grid") && out.contains("[30, 30, 20]"),
        "{out}"
    );
    let o = autoplan(&[
        "gamma",
        "--reference",
        a.to_str().unwrap(),
        "--evaluated",
        b.to_str().unwrap(),
        "--criteria",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("PERCENT/MM"), "{}", text(&o));
}

/// A failed import names the file and attribute and leaves nothing at --out, not even a
/// partial directory beside it.
#[test]
fn a_failed_dicom_import_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("patient");
    let set = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dicom-rt/tests/fixtures/sets/missing-slice");
    let o = autoplan(&[
        "import-dicom",
        set.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let s = text(&o);
    assert!(
        s.contains("ImagePositionPatient (0020,0032)") && s.contains("non-uniform spacing"),
        "{s}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // An existing directory is never written into.
    std::fs::create_dir(&out).unwrap();
    let good = set.with_file_name("hfs");
    let o = autoplan(&[
        "import-dicom",
        good.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("already exists"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}
