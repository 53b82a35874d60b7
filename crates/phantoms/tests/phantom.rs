//! The synthetic cervix cohort: determinism, distinct patients, anatomy in the right places,
//! realistic CT numbers and clinically plausible volumes.

use std::path::{Path, PathBuf};

use patient_model::MaskOps;
use phantoms::cohort::CohortSpec;
use rayon::prelude::*;
use tps_api::Patient;
use tps_api::structure::Mask;

fn cohort() -> CohortSpec {
    let path: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cohorts/cervix-35.toml");
    CohortSpec::load(&path).unwrap()
}

fn centroid(p: &Patient, name: &str) -> [f64; 3] {
    p.structure(name).unwrap().mask.centroid_mm().unwrap()
}

fn volume(p: &Patient, name: &str) -> f64 {
    p.structure(name).unwrap().mask.volume_cc()
}

fn mean_hu(p: &Patient, m: &Mask) -> f64 {
    let (n, s) = m
        .data()
        .iter()
        .zip(p.ct_hu())
        .filter(|(v, _)| **v)
        .fold((0usize, 0.0f64), |(n, s), (_, &hu)| (n + 1, s + hu as f64));
    s / n as f64
}

/// The central part of the CTV (uterus, cervix, vagina): the CTV within 20 mm of the midline
/// between the pelvic floor and the top of the bladder.
fn central_ctv(p: &Patient) -> Mask {
    let g = *p.grid();
    let region = Mask::from_fn(g, |x, _, z| x.abs() < 20.0 && (-40.0..60.0).contains(&z));
    p.structure("CTV")
        .unwrap()
        .mask
        .intersection(&region)
        .unwrap()
}

#[test]
fn generation_is_deterministic_and_patients_differ() {
    let c = cohort();
    let a = c.generate(3).unwrap();
    let b = c.generate(3).unwrap();
    assert_eq!(a.ct_hu(), b.ct_hu());
    assert_eq!(a.structures(), b.structures());
    let other = c.generate(4).unwrap();
    assert_ne!(a.ct_hu(), other.ct_hu());
    assert_ne!(a.structures(), other.structures());
    // All 35 parameter sets are distinct.
    let params: Vec<_> = c.ids().map(|id| c.params(id).unwrap()).collect();
    for i in 0..params.len() {
        for j in i + 1..params.len() {
            assert_ne!(
                params[i],
                params[j],
                "patients {} and {} coincide",
                i + 1,
                j + 1
            );
        }
    }
}

/// Every patient of the cohort: organs in their anatomical places, CT numbers of their
/// tissues, volumes in clinical ranges (bladder 150-500 cc by construction of the spec, PTV
/// about 800-1600 cc as in pelvic nodal cervix plans).
#[test]
fn every_cohort_patient_is_anatomically_plausible() {
    let c = cohort();
    let ids: Vec<usize> = c.ids().collect();
    let problems: Vec<String> = ids
        .par_iter()
        .flat_map_iter(|&id| {
            let p = c.generate(id).unwrap();
            let mut bad = Vec::new();
            let mut check = |ok: bool, what: String| {
                if !ok {
                    bad.push(format!("p{id:02}: {what}"));
                }
            };
            let uterus = central_ctv(&p).centroid_mm().unwrap();
            let bladder = centroid(&p, "Bladder");
            let rectum = centroid(&p, "Rectum");
            check(
                bladder[1] < uterus[1] - 15.0,
                format!(
                    "bladder y {:.0} not anterior to uterus y {:.0}",
                    bladder[1], uterus[1]
                ),
            );
            check(
                rectum[1] > uterus[1] + 15.0,
                format!(
                    "rectum y {:.0} not posterior to uterus y {:.0}",
                    rectum[1], uterus[1]
                ),
            );
            let fl = centroid(&p, "Femur_Head_L");
            let fr = centroid(&p, "Femur_Head_R");
            check(
                fl[0] > 60.0 && fr[0] < -60.0,
                format!("femoral heads at x {:.0} / {:.0}", fl[0], fr[0]),
            );
            check(
                fl[2].abs() < 30.0 && fr[2].abs() < 30.0,
                "femoral heads not at hip level".into(),
            );
            let bowel = centroid(&p, "Bag_Bowel");
            check(
                bowel[2] > bladder[2] + 30.0,
                format!(
                    "bowel z {:.0} not superior to bladder z {:.0}",
                    bowel[2], bladder[2]
                ),
            );
            let cord = centroid(&p, "SpinalCord");
            check(
                cord[1] > rectum[1] && cord[2] > 60.0,
                format!("spinal canal at {cord:?}"),
            );
            // Bone marrow lies inside bone: marrow CT numbers, nothing soft.
            let marrow = &p.structure("BoneMarrow").unwrap().mask;
            let hu = mean_hu(&p, marrow);
            check(
                (180.0..=320.0).contains(&hu),
                format!("bone marrow mean {hu:.0} HU"),
            );
            let soft = marrow
                .data()
                .iter()
                .zip(p.ct_hu())
                .filter(|(m, h)| **m && **h < 100)
                .count();
            check(soft == 0, format!("{soft} bone-marrow voxels below 100 HU"));
            let urine = mean_hu(&p, &p.structure("Bladder").unwrap().mask);
            check(
                (0.0..=20.0).contains(&urine),
                format!("bladder mean {urine:.0} HU"),
            );
            let ext = &p.structure("External").unwrap().mask;
            let outside_air = ext
                .data()
                .iter()
                .zip(p.ct_hu())
                .all(|(m, h)| *m || *h == -1000);
            check(outside_air, "CT outside the body is not air".into());
            // Fat in the body: a good share of voxels near -100 HU.
            let fat = ext
                .data()
                .iter()
                .zip(p.ct_hu())
                .filter(|(m, h)| **m && (-140..=-60).contains(*h))
                .count();
            let body = ext.count();
            check(
                fat as f64 > 0.1 * body as f64,
                format!("only {fat} of {body} body voxels are fat"),
            );
            for (name, lo, hi) in [
                ("PTV", 800.0, 1600.0),
                ("Bladder", 130.0, 500.0),
                ("Rectum", 40.0, 200.0),
                ("Femur_Head_L", 30.0, 120.0),
                ("Femur_Head_R", 30.0, 120.0),
                ("BoneMarrow", 400.0, 1300.0),
                ("SpinalCord", 15.0, 80.0),
                ("Bag_Bowel", 800.0, 4000.0),
            ] {
                let v = volume(&p, name);
                check(
                    (lo..=hi).contains(&v),
                    format!("{name} {v:.0} cc outside {lo}-{hi}"),
                );
            }
            // The PTV contains the CTV and stays inside the body.
            let ptv = &p.structure("PTV").unwrap().mask;
            let ctv = &p.structure("CTV").unwrap().mask;
            check(
                ptv.subtract(ext).unwrap().is_empty(),
                "PTV outside the body".into(),
            );
            let ctv_out = ctv.subtract(ptv).unwrap().count();
            check(
                ctv_out < ctv.count() / 50,
                format!("{ctv_out} CTV voxels outside the PTV"),
            );
            bad.into_iter()
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn inguinal_variant_extends_the_ptv_to_the_groin() {
    let c = cohort();
    let ing = c.inguinal[0];
    let regular = c
        .test_ids()
        .into_iter()
        .find(|id| !c.inguinal.contains(id))
        .unwrap();
    let low_anterior = |id: usize| {
        let p = c.generate(id).unwrap();
        let g = *p.grid();
        // Groin: anterior and lateral, below the femoral head centres.
        let groin = Mask::from_fn(g, |x, y, z| x.abs() > 50.0 && y < -40.0 && z < -40.0);
        p.structure("PTV")
            .unwrap()
            .mask
            .intersection(&groin)
            .unwrap()
            .volume_cc()
    };
    let (a, b) = (low_anterior(ing), low_anterior(regular));
    assert!(
        a > 50.0 && b < 5.0,
        "groin PTV: inguinal p{ing:02} {a:.1} cc, regular p{regular:02} {b:.1} cc"
    );
}

/// The prostate site: the same pelvis with a prostate and seminal vesicles as the target,
/// under the bladder and against the rectum, and none of the gynaecological target.
#[test]
fn prostate_cohort_patients_have_a_prostate_target() {
    let path: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cohorts/prostate-12.toml");
    let c = CohortSpec::load(&path).unwrap();
    for id in [1, 6, 12] {
        let p = c.generate(id).unwrap();
        let drawn = c.params(id).unwrap().prostate_cc.unwrap();
        // CTV: the gland (cut by rectum and bladder) plus two vesicles of about 5 cc each.
        let ctv = volume(&p, "CTV");
        assert!(
            ctv > 0.8 * drawn && ctv < drawn + 15.0,
            "p{id}: CTV {ctv:.0} cc, prostate {drawn:.0} cc"
        );
        // A 7 mm margin about doubles a 30-60 cc target.
        let ptv = volume(&p, "PTV");
        assert!(
            (1.6 * ctv..3.2 * ctv).contains(&ptv),
            "p{id}: PTV {ptv:.0} cc"
        );
        // No nodes: the target stays within 45 mm of the midline and below the iliac crests.
        let target = &p.structure("PTV").unwrap().mask;
        let wide = Mask::from_fn(*p.grid(), |x, _, z| x.abs() > 45.0 || z > 80.0);
        assert_eq!(target.intersection(&wide).unwrap().count(), 0, "p{id}");
        // Under the bladder, in front of the rectum.
        let [_, ty, tz] = centroid(&p, "CTV");
        let [_, by, bz] = centroid(&p, "Bladder");
        let [_, ry, _] = centroid(&p, "Rectum");
        assert!(tz < bz, "p{id}: CTV z {tz:.0}, bladder z {bz:.0}");
        assert!(
            ty < ry && ty > by,
            "p{id}: y bladder {by:.0} < CTV {ty:.0} < rectum {ry:.0}"
        );
        // The PTV reaches both organs, as prostate PTVs do.
        for organ in ["Bladder", "Rectum"] {
            let m = &p.structure(organ).unwrap().mask;
            let shared = m.intersection(target).unwrap().count();
            assert!(shared > 0, "p{id}: PTV misses the {organ}");
        }
        // Soft tissue where the gland is.
        let hu = mean_hu(&p, &p.structure("CTV").unwrap().mask);
        assert!((20.0..60.0).contains(&hu), "p{id}: CTV {hu:.0} HU");
    }
}
