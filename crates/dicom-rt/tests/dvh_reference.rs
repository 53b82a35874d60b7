//! Our DVH figures of an exported plan against dicompyler-core's, from the same files.
//!
//! The case (cervix patient 7 with the protocol's rings and the analytic dose of `autoplan
//! synthetic-dose`, its defaults) is exported here and read back by our importer; the reference
//! values in `fixtures/dvh_reference.json` were computed from an export of the same case by
//! `fixtures/dvh_reference.py` with pydicom and dicompyler-core (the commands are in the
//! script). Mean, max, D95, D50 and D2 must agree within 1 % or 0.2 Gy, whichever is larger
//! (the tolerance: dicompyler bins its DVH at 1 cGy and interpolates its D-values,
//! ours are exact order statistics); every structure's volume must equal the independent sum
//! of its polygon areas times the slice spacing within 0.1 % (contours along voxel edges
//! enclose exactly the voxels).

use std::path::Path;

use dicom_rt::export::{PlanExport, export};
use dicom_rt::import::{Options, import};
use evaluation::dvh::Dvh;
use phantoms::cohort::CohortSpec;
use phantoms::synthetic_dose::{ConformalDose, conformal};
use serde_json::Value;

#[test]
fn our_dvh_figures_agree_with_dicompyler_core_on_the_exported_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dvh_reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let protocol = tps_api::Protocol::load(&root.join("configs/protocols/cervix.toml")).unwrap();
    let mut patient = CohortSpec::load(&root.join("configs/cohorts/cervix-35.toml"))
        .unwrap()
        .generate(7)
        .unwrap();
    patient_model::recipes::build_auxiliary(&protocol, &mut patient).unwrap();
    // The parameters `autoplan synthetic-dose` uses by default.
    let dose = conformal(
        &patient,
        "PTV",
        &ConformalDose {
            prescription_cgy: 3600.0,
            hot: 1.03,
            ripple: 0.04,
            falloff_mm: 12.0,
            seed: 1,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = export(
        &PlanExport {
            patient: &patient,
            dose: Some(&dose),
            prescription: Some(&protocol.prescription),
            deliverable: None,
            label: "dvh".into(),
            description: String::new(),
        },
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        out.dose_grid_scaling.unwrap(),
        reference["dose_grid_scaling"].as_f64().unwrap(),
        "the export differs from the one the reference was made from"
    );
    let back = import(dir.path(), &Options::default()).unwrap();
    let d = back.dose.unwrap().on_ct;
    let structures = reference["structures"].as_object().unwrap();
    assert_eq!(structures.len(), patient.structures().len());
    let mut worst = (0.0f64, String::new());
    for (name, r) in structures {
        let s = back.patient.structure(name).unwrap();
        let dvh = Dvh::new(name, d.cgy(), &s.mask).unwrap();
        let ours = [
            ("mean_gy", dvh.mean()),
            ("max_gy", dvh.max()),
            ("d95_gy", dvh.d_percent(95.0)),
            ("d50_gy", dvh.d_percent(50.0)),
            ("d2_gy", dvh.d_percent(2.0)),
        ];
        for (key, cgy) in ours {
            let (gy, want) = (cgy / 100.0, r[key].as_f64().unwrap());
            let tol = (0.01 * want.abs()).max(0.2);
            assert!(
                (gy - want).abs() <= tol,
                "{name} {key}: ours {gy:.3} Gy, dicompyler {want:.3}"
            );
            if (gy - want).abs() > worst.0 {
                worst = ((gy - want).abs(), format!("{name} {key}"));
            }
        }
        let polygons = r["polygon_volume_cc"].as_f64().unwrap();
        let v = dvh.volume_cc();
        assert!(
            (v - polygons).abs() <= 1e-3 * polygons,
            "{name}: {v} cc vs polygons {polygons}"
        );
    }
    eprintln!("largest DVH difference: {:.3} Gy ({})", worst.0, worst.1);
}
