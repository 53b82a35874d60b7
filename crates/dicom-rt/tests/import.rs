//! The importer against DICOM sets written by pydicom (`tests/fixtures/make_sets.py`, not our
//! writer): one phantom stored as a patient in each of HFS, FFS, HFP and FFP must import to the
//! same LPS volume, with exactly the voxels the script expects (contours along voxel edges give
//! back their voxels; a polygon off the edges gives the centres matplotlib finds inside it),
//! and its RT dose in three encodings must read back within the quantization. The broken sets
//! must each give a clear error naming the file and the attribute.

use std::path::{Path, PathBuf};

use dicom_rt::AliasTable;
use dicom_rt::import::{Options, import};
use serde_json::Value;
use tps_api::Protocol;
use tps_api::structure::Role;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn triple(v: &Value) -> [f64; 3] {
    [f(&v[0]), f(&v[1]), f(&v[2])]
}

#[test]
fn every_patient_position_imports_to_the_same_lps_volume_with_exact_structures() {
    let e = expected();
    for set in ["hfs", "ffs", "hfp", "ffp"] {
        let dir = fixtures().join("sets").join(set);
        let im = import(&dir, &Options::default()).unwrap_or_else(|err| panic!("{set}: {err}"));
        let p = &im.patient;
        let g = p.grid();
        let dims = triple(&e["grid"]["dims"]).map(|v| v as usize);
        assert_eq!(g.dims, dims, "{set}");
        for a in 0..3 {
            assert!(
                (g.spacing_mm[a] - f(&e["grid"]["spacing_mm"][a])).abs() < 1e-9,
                "{set}"
            );
            assert!(
                (g.origin_mm[a] - f(&e["grid"]["origin_mm"][a])).abs() < 1e-9,
                "{set}"
            );
        }
        let hu = &e["hu"];
        for n in 0..g.len() {
            let [i, j, k] = g.ijk(n);
            let want = f(&hu["base"])
                + f(&hu["i"]) * i as f64
                + f(&hu["j"]) * j as f64
                + f(&hu["k"]) * k as f64;
            assert_eq!(
                p.ct_hu()[n] as f64,
                want,
                "{set}: HU of voxel ({i}, {j}, {k})"
            );
        }
        for (name, voxels) in e["masks"].as_object().unwrap() {
            let want: Vec<usize> = voxels
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            if want.is_empty() {
                assert!(p.structure(name).is_none(), "{set}: {name} is empty");
                assert!(
                    im.report
                        .notes
                        .iter()
                        .any(|n| n.starts_with(&format!("{name}: empty"))),
                    "{set}: {:?}",
                    im.report.notes
                );
                continue;
            }
            let s = p.structure(name).unwrap_or_else(|| panic!("{set}: {name}"));
            let got: Vec<usize> = (0..g.len()).filter(|&n| s.mask.data()[n]).collect();
            assert_eq!(got, want, "{set}: voxels of {name}");
        }
        assert_eq!(p.structure("BODY").unwrap().role, Role::External);
        assert_eq!(p.structure("PTV_Cervix").unwrap().role, Role::Target);
        assert_eq!(p.structure("Bladder").unwrap().role, Role::Oar);
        assert!(p.structure("Marker").is_none());
        assert!(
            im.report
                .notes
                .iter()
                .any(|n| n.contains("Marker: 1 contours of other types skipped (POINT)")),
            "{:?}",
            im.report.notes
        );
        assert!(
            im.report
                .notes
                .iter()
                .any(|n| n.contains("1 files without the DICOM preamble"))
        );
        assert_eq!(
            im.report.series.patient_position.as_deref(),
            e["sets"][set]["position"].as_str()
        );
    }
}

/// The linear dose of the fixtures at a patient position, Gy.
fn dose_gy(e: &Value, p: [f64; 3]) -> f64 {
    let d = &e["dose"];
    f(&d["gy"]) + f(&d["x"]) * p[0] + f(&d["y"]) * p[1] + f(&d["z"]) * p[2]
}

#[test]
fn rt_doses_in_three_encodings_read_back_within_their_quantization_and_land_on_the_ct() {
    let e = expected();
    for set in ["hfs", "ffs", "hfp", "ffp"] {
        let dir = fixtures().join("sets").join(set);
        let im = import(&dir, &Options::default()).unwrap();
        let d = im.dose.unwrap_or_else(|| panic!("{set}: no dose imported"));
        // Half a quantization step, plus float rounding of cGy values near 200.
        let tol_cgy = 50.0 * f(&e["sets"][set]["dose_scaling"]) + 1e-4;
        let g = d.native.grid();
        assert!(g.is_lps_aligned());
        assert_eq!(
            g.dims,
            triple(&e["dose_grid"]["dims"]).map(|v| v as usize),
            "{set}"
        );
        for a in 0..3 {
            assert!(
                (g.origin_mm[a] - f(&e["dose_grid"]["origin"][a])).abs() < 1e-9,
                "{set}"
            );
        }
        for n in 0..g.len() {
            let [i, j, k] = g.ijk(n);
            let want = 100.0 * dose_gy(&e, g.position_mm(i, j, k));
            let got = d.native.cgy()[n] as f64;
            assert!(
                (got - want).abs() <= tol_cgy,
                "{set}: {got} vs {want} cGy at {:?}",
                [i, j, k]
            );
        }
        // On the CT: trilinear interpolation of a linear dose is exact inside the dose grid.
        let ct = d.on_ct.grid();
        assert_eq!(ct, im.patient.grid());
        let (lo, hi) = (
            g.position_mm(0, 0, 0),
            g.position_mm(g.dims[0] - 1, g.dims[1] - 1, g.dims[2] - 1),
        );
        let mut inside = 0;
        for n in 0..ct.len() {
            let [i, j, k] = ct.ijk(n);
            let p = ct.position_mm(i, j, k);
            if (0..3).all(|a| p[a] >= lo[a] && p[a] <= hi[a]) {
                inside += 1;
                let want = 100.0 * dose_gy(&e, p);
                let got = d.on_ct.cgy()[n] as f64;
                assert!(
                    (got - want).abs() <= tol_cgy + 1e-3,
                    "{set}: {got} vs {want} cGy on CT"
                );
            }
        }
        assert!(
            inside > 100,
            "{set}: {inside} CT voxels inside the dose grid"
        );
        assert_eq!(d.summation.as_deref(), Some("PLAN"));
    }
}

#[test]
fn with_the_cervix_protocol_and_the_alias_table_structures_take_the_protocol_names() {
    let protocol = Protocol::load(&configs().join("protocols/cervix.toml")).unwrap();
    let aliases = AliasTable::load(&configs().join("dicom/aliases.toml")).unwrap();
    let opts = Options {
        aliases: Some(&aliases),
        protocol: Some(&protocol),
        id: Some("imported-1".into()),
        dose: None,
    };
    let im = import(&fixtures().join("sets/hfs"), &opts).unwrap();
    let p = &im.patient;
    assert_eq!(p.id, "imported-1");
    for (name, dicom) in [
        ("PTV", "PTV_Cervix"),
        ("External", "BODY"),
        ("Bag_Bowel", "Bowel Bag"),
        ("BoneMarrow", "Bone_Marrow"),
        ("Femur_Head_L", "FemoralHead_L"),
        ("Femur_Head_R", "Femoral Head R"),
        ("Bladder", "Bladder"),
        ("SpinalCord", "SpinalCord"),
    ] {
        assert!(
            p.structure(name).is_some(),
            "{name}: {:?}",
            p.structure_names()
        );
        let s = im
            .report
            .structures
            .iter()
            .find(|s| s.name == name)
            .unwrap();
        assert_eq!(s.dicom_name, dicom);
    }
    assert_eq!(p.structure("PTV").unwrap().role, Role::Target);
    assert_eq!(p.structure("External").unwrap().role, Role::External);
    protocol.check_roles(p).unwrap();
}

#[test]
fn required_structures_that_are_missing_are_named_together_with_those_found() {
    let protocol = Protocol::load(&configs().join("protocols/cervix.toml")).unwrap();
    let opts = Options {
        protocol: Some(&protocol),
        ..Options::default()
    };
    let err = import(&fixtures().join("sets/hfs"), &opts)
        .unwrap_err()
        .to_string();
    for s in [
        "PTV",
        "External",
        "Bag_Bowel",
        "BoneMarrow",
        "Femur_Head_L",
        "Femur_Head_R",
    ] {
        assert!(err.contains(s), "{s} missing from: {err}");
    }
    assert!(
        err.contains("RS.struct.dcm") && err.contains("\"PTV_Cervix\""),
        "{err}"
    );
    assert!(err.contains("aliases.toml"), "{err}");
}

fn broken(name: &str) -> String {
    match import(&fixtures().join("sets").join(name), &Options::default()) {
        Ok(_) => panic!("{name}: imported"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_broken_set_is_refused_with_the_file_and_the_attribute() {
    let e = expected();
    let b = &e["broken"];
    let missing = broken("missing-slice");
    assert!(
        missing.contains("non-uniform spacing (about 1 slices missing)")
            && missing.contains("ImagePositionPatient (0020,0032)")
            && missing.contains("6.000 mm from the previous slice"),
        "{missing}"
    );
    let dup = broken("duplicate-slice");
    assert!(
        dup.contains("duplicate slice") && dup.contains(".dcm"),
        "{dup}"
    );
    let uneven = broken("nonuniform");
    assert!(
        uneven.contains("non-uniform spacing") && uneven.contains("3.500 mm"),
        "{uneven}"
    );
    let oblique = broken("oblique");
    assert!(
        oblique.contains("ImageOrientationPatient (0020,0037)") && oblique.contains("oblique"),
        "{oblique}"
    );
    let two = broken("two-series");
    assert!(
        two.contains("several CT series") && two.matches("6 slices").count() == 2,
        "{two}"
    );
    let other = broken("other-frame");
    assert!(
        other.contains("refers to no CT series") && other.contains("RS.dcm"),
        "{other}"
    );
    let none = broken("no-ct");
    assert!(
        none.contains("no CT image") && none.contains("RTSTRUCT 1"),
        "{none}"
    );
    let truncated = broken("truncated");
    assert!(
        truncated.contains(b["truncated"].as_str().unwrap()),
        "the truncated file must be named: {truncated}"
    );
    let compressed = broken("compressed");
    assert!(
        compressed.contains("TransferSyntaxUID (0002,0010)")
            && compressed.contains(b["compressed"].as_str().unwrap())
            && compressed.contains("uncompressed"),
        "{compressed}"
    );
}

#[test]
fn a_directory_that_does_not_exist_or_holds_no_dicom_is_named() {
    let e = import(Path::new("/nonexistent/dicom"), &Options::default()).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/dicom"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let e = import(dir.path(), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no CT image") && e.contains("1 files without the DICOM preamble"),
        "{e}"
    );
}
