//! A synthetic female pelvis with a cervical-cancer target.
//!
//! Patient coordinates are LPS (x to the patient's left, y posterior, z superior), origin at
//! the midpoint between the femoral head centres. The anatomy is built from simple solids
//! (ellipsoids, tubes along centre lines, per-slice curved plates) placed at landmarks of an
//! average adult female pelvis and scaled per patient. Dimensions are chosen to be plausible,
//! not to match an atlas; the sources of the ranges are in `docs/phantom.md`.
//!
//! Structure names follow AAPM TG-263 (Mayo et al., "American Association of Physicists in
//! Medicine Task Group 263: Standardizing Nomenclatures in Radiation Oncology", IJROBP 100,
//! 2018): `External`, `PTV`, `CTV`, `Bladder`, `Rectum`, `Bag_Bowel`, `SpinalCord`,
//! `BoneMarrow`, `Femur_Head_L`, `Femur_Head_R`. As in the source study, the spinal cord
//! structure is the lumbar and sacral spinal canal.

use rayon::prelude::*;

use patient_model::{MaskOps, morph};
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role, Structure};

use crate::rng::{SplitMix64, voxel_noise};
use crate::shapes::{
    Bounds, Ellipsoid, P3, Tube, bezier2, dist2_segment_2d, interp, rasterize, rasterize_slices,
};

/// Validated anatomical variation of a cohort.
#[derive(Debug, Clone, PartialEq)]
pub struct AnatomyRanges {
    /// Half-width of the body at hip level, mm.
    pub body_half_width_mm: [f64; 2],
    /// Half anterior-posterior depth of the body at hip level, mm.
    pub body_half_depth_mm: [f64; 2],
    /// Subcutaneous fat thickness, mm.
    pub subcutaneous_fat_mm: [f64; 2],
    /// Scale of the bony pelvis relative to an average adult female pelvis.
    pub pelvis_scale: [f64; 2],
    /// Bladder filling, cc.
    pub bladder_cc: [f64; 2],
    /// Rectum outer radius, mm.
    pub rectum_radius_mm: [f64; 2],
    /// Probability that the rectum holds a gas pocket.
    pub rectal_gas_probability: f64,
    /// Uterine corpus length, mm.
    pub uterus_length_mm: [f64; 2],
    /// Anteversion of the uterus from the body axis, degrees.
    pub anteversion_deg: [f64; 2],
    /// Largest random shift of the pelvic organs from their mean position, mm.
    pub organ_shift_mm: f64,
    /// Superior border of the nodal CTV above the femoral heads, mm (scaled with the pelvis).
    pub nodal_top_mm: [f64; 2],
    /// Margin from the iliac vessels to the nodal CTV, mm.
    pub nodal_margin_mm: f64,
    /// CTV-to-PTV margin, mm.
    pub ptv_margin_mm: f64,
    /// Prostate volume, cc: set for prostate cohorts, whose patients have no uterus or nodal
    /// target (the gynaecological ranges above then hold fixed placeholders, drawn but unused).
    pub prostate_cc: Option<[f64; 2]>,
}

/// One patient's anatomy, drawn from a cohort's [`AnatomyRanges`].
#[derive(Debug, Clone, PartialEq)]
pub struct PelvisParams {
    /// Seed of the CT noise.
    pub noise_seed: u64,
    /// Half-width of the body at hip level, mm.
    pub body_half_width_mm: f64,
    /// Half anterior-posterior depth at hip level, mm.
    pub body_half_depth_mm: f64,
    /// Subcutaneous fat, mm.
    pub fat_mm: f64,
    /// Bony pelvis scale.
    pub scale: f64,
    /// Bladder volume before indentation by the uterus, cc.
    pub bladder_cc: f64,
    /// Rectum radius, mm.
    pub rectum_radius_mm: f64,
    /// Whether the rectum holds a gas pocket.
    pub rectal_gas: bool,
    /// Uterine corpus length, mm.
    pub uterus_length_mm: f64,
    /// Anteversion drawn for an empty bladder, degrees (a full bladder makes the uterus more
    /// upright).
    pub anteversion_deg: f64,
    /// Shift of uterus, cervix and vagina from the mean position, mm.
    pub uterus_shift_mm: P3,
    /// Shift of the bladder, mm.
    pub bladder_shift_mm: P3,
    /// Lateral shift of the rectum, mm.
    pub rectum_shift_x_mm: f64,
    /// CT number of red marrow, HU.
    pub marrow_hu: f64,
    /// CT number of cortical bone, HU.
    pub cortical_hu: f64,
    /// Margin from vessels to nodal CTV, mm.
    pub nodal_margin_mm: f64,
    /// CTV-to-PTV margin, mm.
    pub ptv_margin_mm: f64,
    /// Superior border of the nodal CTV, mm (the aortic bifurcation lies between L4 and L5).
    pub nodal_top_mm: f64,
    /// Relative size difference of the left and right femoral heads (left larger when
    /// positive).
    pub femur_asymmetry: f64,
    /// Whether the nodal CTV extends to the inguinal nodes.
    pub inguinal: bool,
    /// Prostate volume, cc, for a prostate-cancer target in place of the gynaecological one
    /// (no uterus, cervix, vagina, parametria or nodes; see [`generate`]).
    pub prostate_cc: Option<f64>,
}

impl PelvisParams {
    /// Draws one patient's parameters.
    pub fn draw(r: &AnatomyRanges, rng: &mut SplitMix64, inguinal: bool) -> Self {
        let shift = |rng: &mut SplitMix64, m: f64| {
            [
                rng.uniform([-m, m]),
                rng.uniform([-m, m]),
                rng.uniform([-m, m]),
            ]
        };
        Self {
            noise_seed: rng.next_u64(),
            body_half_width_mm: rng.uniform(r.body_half_width_mm),
            body_half_depth_mm: rng.uniform(r.body_half_depth_mm),
            fat_mm: rng.uniform(r.subcutaneous_fat_mm),
            scale: rng.uniform(r.pelvis_scale),
            bladder_cc: rng.uniform(r.bladder_cc),
            rectum_radius_mm: rng.uniform(r.rectum_radius_mm),
            rectal_gas: rng.chance(r.rectal_gas_probability),
            uterus_length_mm: rng.uniform(r.uterus_length_mm),
            anteversion_deg: rng.uniform(r.anteversion_deg),
            uterus_shift_mm: shift(rng, r.organ_shift_mm),
            bladder_shift_mm: shift(rng, r.organ_shift_mm),
            rectum_shift_x_mm: rng.uniform([-0.5, 0.5]) * r.organ_shift_mm,
            marrow_hu: rng.uniform([200.0, 300.0]),
            cortical_hu: rng.uniform([800.0, 1100.0]),
            nodal_margin_mm: r.nodal_margin_mm,
            ptv_margin_mm: r.ptv_margin_mm,
            nodal_top_mm: rng.uniform(r.nodal_top_mm),
            femur_asymmetry: rng.uniform([-0.04, 0.04]),
            inguinal,
            // Drawn last, so that cervix cohorts draw exactly what they drew before.
            prostate_cc: r.prostate_cc.map(|range| rng.uniform(range)),
        }
    }
}

/// Tissue classes, painted in increasing priority and then turned into HU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Tissue {
    Air,
    Fat,
    Muscle,
    CavityFat,
    BowelLoop,
    BowelGas,
    Parametrium,
    Vessel,
    Urine,
    Uterus,
    Cervix,
    Vagina,
    Prostate,
    Rectum,
    RectalGas,
    Marrow,
    Cortex,
    Csf,
}

impl Tissue {
    /// Mean CT number and noise amplitude, HU. Typical values for unenhanced CT: fat about
    /// -100, muscle and solid organs 40-50, urine 0-15, air and bowel gas -1000 to -800;
    /// marrow and cortex come from the patient's parameters.
    fn hu(self, p: &PelvisParams) -> (f64, f64) {
        match self {
            Tissue::Air => (-1000.0, 0.0),
            Tissue::Fat => (-100.0, 15.0),
            Tissue::Muscle => (45.0, 12.0),
            Tissue::CavityFat => (-90.0, 15.0),
            Tissue::BowelLoop => (30.0, 15.0),
            Tissue::BowelGas => (-850.0, 60.0),
            Tissue::Parametrium => (-20.0, 25.0),
            Tissue::Vessel => (40.0, 10.0),
            Tissue::Urine => (10.0, 8.0),
            Tissue::Uterus => (50.0, 10.0),
            Tissue::Cervix => (42.0, 10.0),
            Tissue::Vagina => (38.0, 10.0),
            Tissue::Prostate => (40.0, 10.0),
            Tissue::Rectum => (30.0, 15.0),
            Tissue::RectalGas => (-950.0, 30.0),
            Tissue::Marrow => (p.marrow_hu, 30.0),
            Tissue::Cortex => (p.cortical_hu, 120.0),
            Tissue::Csf => (12.0, 8.0),
        }
    }
}

/// Body outline: torso (a flattened superellipse, flat where the back lies on the couch)
/// above the perineum, two thighs below.
struct BodyShape {
    w: f64,
    d: f64,
    yc: f64,
}

impl BodyShape {
    const TORSO_BOTTOM_MM: f64 = -75.0;

    fn half_axes(&self, z: f64) -> (f64, f64) {
        let a = self.w
            * interp(
                &[
                    (-75.0, 0.9),
                    (-30.0, 1.0),
                    (60.0, 1.0),
                    (130.0, 0.93),
                    (215.0, 0.86),
                ],
                z,
            );
        let b = self.d * interp(&[(-75.0, 0.9), (0.0, 1.0), (80.0, 0.97), (215.0, 0.95)], z);
        (a, b)
    }

    /// Inside the body, shrunk by `inset` mm (an inset of the fat thickness gives the muscle
    /// boundary).
    fn contains(&self, x: f64, y: f64, z: f64, inset: f64) -> bool {
        let back = self.yc + 0.94 * self.half_axes(z).1 - inset;
        if z >= Self::TORSO_BOTTOM_MM {
            let (a, b) = self.half_axes(z);
            let (a, b) = (a - inset, b - inset);
            if a > 0.0 && b > 0.0 && y <= back {
                let u = (x / a).abs().powf(2.4) + ((y - self.yc) / b).abs().powf(2.4);
                if u <= 1.0 {
                    return true;
                }
            }
        }
        if z < -20.0 {
            // Thighs, tapering below the buttocks.
            let taper = interp(&[(-150.0, 0.82), (-75.0, 0.92), (-20.0, 1.0)], z);
            let a = 0.47 * self.w * taper - inset;
            let b = 0.78 * self.d * taper - inset;
            let cx = 0.52 * self.w;
            let cy = self.yc + 0.05 * self.d;
            if a > 0.0 && b > 0.0 && y <= back {
                for sx in [-1.0, 1.0] {
                    let u = ((x - sx * cx) / a).powi(2) + ((y - cy) / b).powi(2);
                    if u <= 1.0 {
                        return true;
                    }
                }
            }
        }
        false
    }
}

/// Mirror a left-side point (x > 0) to the right side.
fn mirror(p: P3) -> P3 {
    [-p[0], p[1], p[2]]
}

/// Both sides of a left-side tube.
fn bilateral(left: Tube, grid: &Grid) -> Mask {
    let mut m = left.mask(grid);
    m.union_in_place(&left.mirrored().mask(grid))
        .expect("same grid");
    m
}

fn union_all(grid: &Grid, masks: impl IntoIterator<Item = Mask>) -> Mask {
    let mut out = Mask::empty(*grid);
    for m in masks {
        out.union_in_place(&m).expect("same grid");
    }
    out
}

fn nonempty(m: Mask, id: &str, name: &str, what: &str) -> Result<Mask> {
    if m.is_empty() {
        return Err(Error::EmptyStructure {
            origin: id.to_string(),
            name: name.to_string(),
            operation: what.to_string(),
        });
    }
    Ok(m)
}

/// What every organ builder reads: the CT grid, the patient's parameters and the pelvis scale.
#[derive(Clone, Copy)]
struct Frame<'a> {
    grid: Grid,
    p: &'a PelvisParams,
    s: f64,
}

impl Frame<'_> {
    /// A point of the average pelvis, scaled to this patient.
    fn sc(&self, v: P3) -> P3 {
        let s = self.s;
        [v[0] * s, v[1] * s, v[2] * s]
    }

    /// Centre of the left femoral head and its radius.
    fn femoral_head(&self) -> (P3, f64) {
        (self.sc([88.0, 0.0, 0.0]), 23.5 * self.s)
    }
}

/// Sacrum centre line: (z, centre y) for scale 1.
const SACRUM_Y: [(f64, f64); 5] = [
    (-25.0, 72.0),
    (0.0, 80.0),
    (40.0, 76.0),
    (80.0, 62.0),
    (110.0, 50.0),
];
/// Sacrum half-width: (z, half-width) for scale 1.
const SACRUM_W: [(f64, f64); 5] = [
    (-25.0, 8.0),
    (0.0, 18.0),
    (20.0, 30.0),
    (60.0, 46.0),
    (110.0, 54.0),
];
/// Sacrum half-depth: (z, half-depth) for scale 1.
const SACRUM_D: [(f64, f64); 4] = [(-25.0, 7.0), (20.0, 12.0), (60.0, 16.0), (110.0, 20.0)];

/// The front surface of the sacrum (y) at height `z`, for scale `s`.
fn sacrum_front(s: f64, z: f64) -> f64 {
    (interp(&SACRUM_Y, z / s) - interp(&SACRUM_D, z / s)) * s
}

/// Body outline, the muscle inside the subcutaneous fat, and the fat-filled cavity.
struct Outline {
    external: Mask,
    inner: Mask,
    cavity: Mask,
}

fn outline(f: Frame<'_>, body: &BodyShape) -> Outline {
    let Frame { grid, p, s } = f;
    let whole = Bounds::new([f64::NEG_INFINITY; 3], [f64::INFINITY; 3]);
    let external = rasterize(&grid, whole, |[x, y, z]| body.contains(x, y, z, 0.0));
    let inner = rasterize(&grid, whole, |[x, y, z]| body.contains(x, y, z, p.fat_mm));
    // The fat-filled space that holds the pelvic organs and, higher up, the bowel: narrow in
    // the true pelvis, wide between the iliac wings; knots are (z, half-width, centre y,
    // half-depth) for scale 1.
    let cavity_knots: [[f64; 4]; 7] = [
        [-55.0, 28.0, 18.0, 30.0],
        [-30.0, 50.0, 5.0, 52.0],
        [0.0, 56.0, 0.0, 58.0],
        [40.0, 68.0, -5.0, 62.0],
        [80.0, 92.0, -12.0, 68.0],
        [130.0, 112.0, -18.0, 72.0],
        [215.0, 120.0, -20.0, 80.0],
    ];
    let knot =
        |col: usize| -> Vec<(f64, f64)> { cavity_knots.iter().map(|k| (k[0], k[col])).collect() };
    let (kw, ky, kd) = (knot(1), knot(2), knot(3));
    let wall = p.fat_mm + 12.0; // abdominal wall muscle inside the fat
    let cavity = rasterize(
        &grid,
        Bounds::new([-200.0, -200.0, -55.0 * s], [200.0, 200.0, 215.0]),
        |[x, y, z]| {
            let zs = z / s;
            let a = interp(&kw, zs) * s;
            let cy = interp(&ky, zs) * s;
            let d = interp(&kd, zs) * s;
            (x / a).powi(2) + ((y - cy) / d).powi(2) <= 1.0 && body.contains(x, y, z, wall)
        },
    );

    Outline {
        external,
        inner,
        cavity,
    }
}

/// Both femora: head, neck and shaft.
fn femora(f: Frame<'_>) -> Result<Mask> {
    let Frame { grid, p, s } = f;
    let sc = |v: P3| f.sc(v);
    let (fh_c, fh_r) = f.femoral_head();
    let femur_side = |side: f64| {
        let r = fh_r * (1.0 + side * p.femur_asymmetry);
        let tube = Tube::new(
            vec![
                fh_c,
                sc([128.0, 8.0, -22.0]),
                sc([124.0, 8.0, -32.0]),
                [108.0 * s, 15.0, -160.0],
            ],
            vec![r, 15.0 * s, 14.0 * s, 13.0 * s],
        );
        let tube = if side > 0.0 { tube } else { tube.mirrored() };
        let c = if side > 0.0 { fh_c } else { mirror(fh_c) };
        let head = Ellipsoid::aligned(c, [r; 3]);
        tube.mask(&grid)
            .union(&rasterize(&grid, head.bounds(), |q| head.contains(q)))
    };
    let femur = femur_side(1.0)?.union(&femur_side(-1.0)?)?;
    Ok(femur)
}

/// Both acetabula.
fn acetabula(f: Frame<'_>) -> Result<Mask> {
    let Frame { grid, s, .. } = f;
    let (fh_c, fh_r) = f.femoral_head();
    let acetabulum = rasterize(&grid, Bounds::around(fh_c, [fh_r + 14.0; 3]), |q| {
        let d = [q[0] - fh_c[0], q[1] - fh_c[1], q[2] - fh_c[2]];
        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        r > fh_r + 1.0 && r < fh_r + 11.0 * s && (-0.55 * d[0] + 0.84 * d[2]) > -6.0
    });
    let acetabulum = acetabulum.union(&rasterize(
        &grid,
        Bounds::around(mirror(fh_c), [fh_r + 14.0; 3]),
        |q| {
            let c = mirror(fh_c);
            let d = [q[0] - c[0], q[1] - c[1], q[2] - c[2]];
            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            r > fh_r + 1.0 && r < fh_r + 11.0 * s && (0.55 * d[0] + 0.84 * d[2]) > -6.0
        },
    ))?;
    Ok(acetabulum)
}

/// Iliac bodies and wings.
fn ilia(f: Frame<'_>) -> (Mask, Mask) {
    let Frame { grid, s, .. } = f;
    let sc = |v: P3| f.sc(v);
    // Ilium: body above the acetabulum plus the wing, a curved plate from the sacroiliac
    // joint to the anterior superior iliac spine whose section changes with height.
    let ilium_body = bilateral(
        Tube::new(
            vec![sc([82.0, 6.0, 18.0]), sc([68.0, 30.0, 55.0])],
            vec![16.0 * s, 13.0 * s],
        ),
        &grid,
    );
    // (z, sacroiliac x, y, control x, y, ASIS x, y, half-thickness)
    let wing: [[f64; 8]; 3] = [
        [40.0, 52.0, 58.0, 86.0, 52.0, 86.0, 8.0, 9.0],
        [90.0, 46.0, 62.0, 112.0, 58.0, 120.0, -12.0, 6.0],
        [135.0, 50.0, 56.0, 116.0, 62.0, 124.0, -4.0, 6.5],
    ];
    let ilium_wing = rasterize_slices(
        &grid,
        Bounds::new(
            [-140.0 * s, -40.0 * s, 38.0 * s],
            [140.0 * s, 90.0 * s, 136.0 * s],
        ),
        |z| {
            let zs = z / s;
            if !(40.0..=135.0).contains(&zs) {
                return None;
            }
            let col = |c: usize| -> f64 {
                interp(&wing.iter().map(|w| (w[0], w[c])).collect::<Vec<_>>(), zs) * s
            };
            let pts = bezier2([col(1), col(2)], [col(3), col(4)], [col(5), col(6)], 16);
            // The crest is rounded: the plate thins over its top 8 mm.
            let h = col(7) * interp(&[(127.0, 1.0), (135.0, 0.5)], zs);
            Some((pts, h * h))
        },
        |(pts, h2), x, y| {
            let q = [x.abs(), y];
            pts.windows(2)
                .any(|w| dist2_segment_2d(q, w[0], w[1]) <= *h2)
        },
    );
    (ilium_body, ilium_wing)
}

/// The sacrum.
fn sacrum(f: Frame<'_>) -> Mask {
    let Frame { grid, s, .. } = f;
    let (sacrum_y, sacrum_w, sacrum_d) = (SACRUM_Y, SACRUM_W, SACRUM_D);

    rasterize_slices(
        &grid,
        Bounds::new(
            [-60.0 * s, 30.0 * s, -25.0 * s],
            [60.0 * s, 110.0 * s, 110.0 * s],
        ),
        |z| {
            let zs = z / s;
            (-25.0..=110.0).contains(&zs).then(|| {
                (
                    interp(&sacrum_y, zs) * s,
                    interp(&sacrum_w, zs) * s,
                    interp(&sacrum_d, zs) * s,
                )
            })
        },
        |&(cy, w, d), x, y| (x / w).abs().powi(3) + ((y - cy) / d).abs().powi(3) <= 1.0,
    )
}

/// Lumbar vertebral bodies, the spinal canal and the posterior arches.
fn lumbar_spine(f: Frame<'_>) -> (Mask, Mask, Mask) {
    let Frame { grid, s, .. } = f;
    let (sacrum_y, sacrum_d) = (SACRUM_Y, SACRUM_D);
    // Lumbar vertebrae L5 and L4 (bodies with discs between), posterior arches throughout.
    let vertebral_bodies = rasterize(
        &grid,
        Bounds::new([-30.0, 10.0, 113.0 * s], [30.0, 70.0, 215.0]),
        |[x, y, z]| {
            let zs = z / s;
            let in_body =
                (115.0..=150.0).contains(&zs) || (157.0..=192.0).contains(&zs) || zs >= 199.0;
            in_body && (x / (25.0 * s)).powi(2) + ((y - 40.0 * s) / (19.0 * s)).powi(2) <= 1.0
        },
    );
    let canal_y = |z: f64| -> f64 {
        let zs = z / s;
        if zs >= 115.0 {
            72.0 * s
        } else {
            interp(&sacrum_y, zs) * s + 0.5 * interp(&sacrum_d, zs) * s
        }
    };
    let canal_pts: Vec<P3> = [215.0, 115.0 * s, 95.0 * s, 70.0 * s, 45.0 * s, 20.0 * s]
        .iter()
        .map(|&z| [0.0, canal_y(z), z])
        .collect();
    let canal = Tube::new(
        canal_pts,
        vec![10.0 * s, 9.5 * s, 8.0 * s, 6.5 * s, 5.0 * s, 4.0 * s],
    )
    .mask(&grid);
    let arch = rasterize(
        &grid,
        Bounds::new(
            [-50.0 * s, 40.0 * s, 112.0 * s],
            [50.0 * s, 110.0 * s, 215.0],
        ),
        |[x, y, z]| {
            if z < 112.0 * s {
                return false;
            }
            let ring = (x / (19.0 * s)).powi(2) + ((y - 73.0 * s) / (15.0 * s)).powi(2) <= 1.0;
            let spinous = x.abs() <= 4.0 * s && y >= 80.0 * s && y <= 102.0 * s;
            let transverse = (y - 64.0 * s).abs() <= 5.0 * s
                && x.abs() <= 46.0 * s
                && (z / s - 133.0).abs() < 9.0
                || (y - 64.0 * s).abs() <= 4.0 * s
                    && x.abs() <= 38.0 * s
                    && (z / s - 175.0).abs() < 7.0;
            ring || spinous || transverse
        },
    );
    (vertebral_bodies, canal, arch)
}

/// Pubic bodies and the pubic and ischial rami.
fn pubis_and_ischium(f: Frame<'_>) -> (Mask, Mask) {
    let Frame { grid, s, .. } = f;
    let sc = |v: P3| f.sc(v);
    // Pubis and ischium.
    let pubic_bodies = rasterize(
        &grid,
        Bounds::around(sc([0.0, -58.0, -30.0]), [35.0 * s, 15.0 * s, 22.0 * s]),
        |q| {
            q[0].abs() > 1.5
                && Ellipsoid::aligned(
                    sc([14.0 * q[0].signum(), -58.0, -30.0]),
                    sc([13.0, 10.0, 18.0]),
                )
                .contains(q)
        },
    );
    let rami = union_all(
        &grid,
        [
            bilateral(
                Tube::uniform(
                    vec![
                        sc([16.0, -58.0, -20.0]),
                        sc([52.0, -42.0, -6.0]),
                        sc([76.0, -18.0, 4.0]),
                    ],
                    8.0 * s,
                ),
                &grid,
            ),
            bilateral(
                Tube::uniform(
                    vec![
                        sc([14.0, -55.0, -44.0]),
                        sc([38.0, -18.0, -60.0]),
                        sc([52.0, 14.0, -66.0]),
                    ],
                    7.0 * s,
                ),
                &grid,
            ),
            bilateral(
                Tube::new(
                    vec![
                        sc([80.0, 20.0, -6.0]),
                        sc([64.0, 28.0, -40.0]),
                        sc([55.0, 24.0, -66.0]),
                    ],
                    vec![12.0 * s, 12.0 * s, 14.0 * s],
                ),
                &grid,
            ),
        ],
    );
    (pubic_bodies, rami)
}

/// Bones with their marrow, and the spinal canal.
struct Bones {
    pelvic: Mask,
    femur: Mask,
    pelvic_marrow: Mask,
    femur_marrow: Mask,
    canal: Mask,
}

fn bones(f: Frame<'_>, inner: &Mask) -> Result<Bones> {
    let grid = f.grid;
    let femur = femora(f)?;
    let acetabulum = acetabula(f)?;
    let (ilium_body, ilium_wing) = ilia(f);
    let sacrum = sacrum(f);
    let (vertebral_bodies, canal, arch) = lumbar_spine(f);
    let (pubic_bodies, rami) = pubis_and_ischium(f);
    let mut pelvic_bones = union_all(
        &grid,
        [
            acetabulum,
            ilium_body,
            ilium_wing,
            sacrum,
            vertebral_bodies,
            arch,
            pubic_bodies,
            rami,
        ],
    );
    pelvic_bones.subtract_in_place(&canal)?;
    // Bone stays under the skin and fat even in the slimmest patient.
    pelvic_bones = pelvic_bones.intersection(inner)?;
    let mut femur = femur.intersection(inner)?;
    femur.subtract_in_place(&pelvic_bones)?;
    // Cortex is the outermost voxel layer (2.5 mm: cortical shells of the pelvis are 1-3 mm,
    // thicker where the femoral neck and acetabular rim carry load).
    let cortex_mm = 2.5;
    let pelvic_marrow = morph::contract(&pelvic_bones, cortex_mm)?;
    let femur_marrow = morph::contract(&femur, cortex_mm)?;
    Ok(Bones {
        pelvic: pelvic_bones,
        femur,
        pelvic_marrow,
        femur_marrow,
        canal,
    })
}

/// Psoas muscles and the vessels (their centre lines carry the nodal CTV).
struct Vessels {
    psoas: Mask,
    common_iliac: Tube,
    external_iliac: Tube,
    internal_iliac: Tube,
    obturator: Tube,
    femoral: Tube,
    mask: Mask,
}

fn muscles_and_vessels(f: Frame<'_>) -> Vessels {
    let Frame { grid, p, s } = f;
    let sc = |v: P3| f.sc(v);
    let psoas = bilateral(
        Tube::new(
            vec![
                [30.0 * s, 50.0 * s, 215.0],
                sc([38.0, 42.0, 160.0]),
                sc([48.0, 32.0, 115.0]),
                sc([62.0, 12.0, 70.0]),
                sc([70.0, -12.0, 35.0]),
                sc([72.0, -36.0, 5.0]),
                sc([70.0, -48.0, -25.0]),
            ],
            [14.0, 18.0, 21.0, 21.0, 19.0, 16.0, 13.0]
                .map(|r| r * s)
                .to_vec(),
        ),
        &grid,
    );
    let aorta = Tube::uniform(vec![[12.0, 6.0 * s, 215.0], sc([8.0, 8.0, 168.0])], 9.0 * s);
    let ivc = Tube::uniform(
        vec![[-20.0, 14.0 * s, 215.0], sc([-12.0, 14.0, 168.0])],
        10.0 * s,
    );
    let common_iliac = Tube::uniform(
        vec![sc([6.0, 10.0, 168.0]), sc([45.0, 22.0, 112.0])],
        10.0 * s,
    );
    let external_iliac = Tube::uniform(
        vec![
            sc([45.0, 22.0, 112.0]),
            sc([58.0, 8.0, 70.0]),
            sc([66.0, -16.0, 30.0]),
            sc([70.0, -42.0, 4.0]),
            sc([72.0, -60.0, -16.0]),
        ],
        9.0 * s,
    );
    let internal_iliac = Tube::uniform(
        vec![
            sc([45.0, 22.0, 112.0]),
            sc([52.0, 38.0, 80.0]),
            sc([54.0, 44.0, 45.0]),
        ],
        8.0 * s,
    );
    let obturator = Tube::uniform(
        vec![
            sc([58.0, 14.0, 42.0]),
            sc([57.0, -8.0, 12.0]),
            sc([54.0, -24.0, -8.0]),
        ],
        5.0 * s,
    );
    let femoral = Tube::uniform(
        vec![
            sc([72.0, -60.0, -16.0]),
            sc([76.0, -72.0, -45.0]),
            sc([78.0, -76.0, -72.0]),
        ],
        6.0 * s,
    );
    let mut vessel_tubes = vec![
        common_iliac.clone(),
        external_iliac.clone(),
        internal_iliac.clone(),
    ];
    if p.inguinal {
        vessel_tubes.push(femoral.clone());
    }
    let vessels = union_all(
        &grid,
        vessel_tubes
            .iter()
            .map(|t| bilateral(t.clone(), &grid))
            .chain([aorta.mask(&grid), ivc.mask(&grid)]),
    );

    Vessels {
        psoas,
        common_iliac,
        external_iliac,
        internal_iliac,
        obturator,
        femoral,
        mask: vessels,
    }
}

/// The bladder's ellipsoid (before other organs are cut out of it) and its semi-axes.
fn bladder_shape(f: Frame<'_>) -> (Ellipsoid, [f64; 3]) {
    let Frame { p, s, .. } = f;
    // Bladder: its neck sits behind the upper symphysis; filling raises the dome.
    // The ellipsoid holds 25 cc more than the drawn volume: the corpus resting on the dome and
    // the cervix behind the base take about that much out of it.
    let r_b = (3.0 * (p.bladder_cc + 25.0) * 1000.0 / (4.0 * std::f64::consts::PI)).cbrt();
    let db = p.bladder_shift_mm;
    let b_semi = [1.2 * r_b, 0.8 * r_b, 1.04 * r_b];
    let bladder_e = Ellipsoid::aligned(
        [db[0], -32.0 * s + db[1], -16.0 * s + b_semi[2] + db[2]],
        b_semi,
    );
    (bladder_e, b_semi)
}

/// Gynaecological organs.
struct Gynaecological {
    uterus: Mask,
    cervix: Mask,
    vagina: Mask,
    upper_vagina: Mask,
}

fn gynaecological(f: Frame<'_>, bladder_e: &Ellipsoid, b_semi: [f64; 3]) -> Result<Gynaecological> {
    let Frame { grid, p, s } = f;
    let du = p.uterus_shift_mm;
    let cervix_top = [du[0], 2.0 * s + du[1], 10.0 * s + du[2]];
    let cervix_bottom = [du[0], 12.0 * s + du[1], -20.0 * s + du[2]];
    let cervix = Tube::uniform(vec![cervix_bottom, cervix_top], 14.0 * s).mask(&grid);
    // Uterus: an anteverted corpus resting on the bladder dome. A fuller bladder lifts it
    // towards upright: the drawn anteversion is reduced until the corpus clears the bladder.
    let ul = p.uterus_length_mm;
    let uterus_semi = [0.36 * ul, 0.26 * ul, 0.5 * ul];
    let reach = 0.8 * uterus_semi[2];
    // The corpus may indent the dome (the bladder is cut around it below) but not sink into
    // the bladder's core.
    let grown_bladder = Ellipsoid::aligned(
        bladder_e.centre,
        [b_semi[0], 0.8 * b_semi[1], 0.8 * b_semi[2]],
    );
    let corpus_clear = |tilt: f64| {
        let axis = [0.0, -tilt.sin(), tilt.cos()];
        (3..=10).all(|n| {
            let t = n as f64 / 10.0 * (reach + uterus_semi[2]);
            !grown_bladder.contains([
                cervix_top[0],
                cervix_top[1] + axis[1] * t,
                cervix_top[2] + axis[2] * t,
            ])
        })
    };
    let drawn = p.anteversion_deg.to_radians();
    let tilt = (0..=22)
        .map(|n| drawn - n as f64 * 5f64.to_radians())
        .find(|&t| corpus_clear(t))
        .unwrap_or(drawn - 110f64.to_radians());
    let axis = [0.0, -tilt.sin(), tilt.cos()];
    let uterus_e = Ellipsoid::tilted_sagittal(
        [
            cervix_top[0],
            cervix_top[1] + axis[1] * reach,
            cervix_top[2] + axis[2] * reach,
        ],
        uterus_semi,
        tilt,
    );
    let uterus = rasterize(&grid, uterus_e.bounds(), |q| uterus_e.contains(q));
    let vagina_bottom_z = -68.0 * s;
    let vagina = rasterize_slices(
        &grid,
        Bounds::new(
            [-25.0, -40.0, vagina_bottom_z],
            [25.0, 60.0, cervix_bottom[2]],
        ),
        |z| {
            let t = (z - vagina_bottom_z) / (cervix_bottom[2] - vagina_bottom_z);
            (0.0..=1.0).contains(&t).then(|| {
                let cy = cervix_bottom[1] * t + (16.0 * s + du[1]) * (1.0 - t);
                let cx = cervix_bottom[0] * t;
                (cx, cy)
            })
        },
        |&(cx, cy), x, y| ((x - cx) / (17.0 * s)).powi(2) + ((y - cy) / (6.5 * s)).powi(2) <= 1.0,
    );
    let upper_vagina_z = 0.5 * (vagina_bottom_z + cervix_bottom[2]);
    let upper_vagina = rasterize(
        &grid,
        Bounds::new([-30.0, -50.0, upper_vagina_z], [30.0, 60.0, 0.0]),
        |_| true,
    )
    .intersection(&vagina)?;
    Ok(Gynaecological {
        uterus,
        cervix,
        vagina,
        upper_vagina,
    })
}

/// Rectum (its tube's points, mask and gas) and sigmoid.
struct Rectum {
    pts: Vec<P3>,
    mask: Mask,
    gas: Mask,
    sigmoid: Mask,
}

fn rectum(f: Frame<'_>) -> Rectum {
    let Frame { grid, p, s } = f;
    let sacrum_front = |z: f64| sacrum_front(s, z);
    // Rectum: from the anal canal along the front of the sacrum to the rectosigmoid junction.
    let rr = p.rectum_radius_mm;
    let rx = p.rectum_shift_x_mm;
    let rectum_pts: Vec<P3> = [-45.0, -20.0, 5.0, 28.0, 48.0]
        .iter()
        .map(|&zs| {
            let z = zs * s;
            [rx, sacrum_front(z) - 20.0 - rr, z]
        })
        .collect();
    let mut pts = vec![[rx, 36.0 * s, -70.0 * s]];
    pts.extend(rectum_pts);
    let rectum_tube = Tube::new(
        pts.clone(),
        vec![0.55 * rr, 0.85 * rr, rr, rr, rr, 0.9 * rr],
    );
    let rectum = rectum_tube.mask(&grid);
    let rectal_gas = if p.rectal_gas {
        let gas = Ellipsoid::aligned(pts[3], [0.55 * rr, 0.45 * rr, 1.2 * rr]);
        rasterize(&grid, gas.bounds(), |q| gas.contains(q))
    } else {
        Mask::empty(grid)
    };
    let sigmoid = Tube::uniform(
        vec![
            pts[5],
            [rx + 15.0, sacrum_front(70.0 * s) - 25.0, 70.0 * s],
            [35.0, -10.0, 90.0 * s],
        ],
        0.8 * rr,
    )
    .mask(&grid);
    Rectum {
        pts,
        mask: rectum,
        gas: rectal_gas,
        sigmoid,
    }
}

/// Prostate site: a prostate under the bladder neck, against the front of the rectum, with
/// the proximal seminal vesicles above and behind it.
fn prostate(
    f: Frame<'_>,
    cc: f64,
    pts: &[P3],
    bladder_e: &Ellipsoid,
    b_semi: [f64; 3],
) -> Result<Mask> {
    let Frame { grid, p, .. } = f;
    let (rr, rx) = (p.rectum_radius_mm, p.rectum_shift_x_mm);
    // Semi-axes in the proportions left-right : anterior-posterior : cranio-caudal =
    // 1.35 : 1 : 1.15 (a prostate of 40 cc measures about 49 x 37 x 42 mm).
    let b = (3.0 * cc * 1000.0 / (4.0 * std::f64::consts::PI * 1.35 * 1.15)).cbrt();
    let semi = [1.35 * b, b, 1.15 * b];
    // The rectum's front wall (its centre line and radius interpolated between the
    // tube's points) at the bladder's base; the rectum indents the prostate by 3 mm.
    let knots_y: Vec<(f64, f64)> = pts.iter().map(|q| (q[2], q[1])).collect();
    let radii = [0.55 * rr, 0.85 * rr, rr, rr, rr, 0.9 * rr];
    let knots_r: Vec<(f64, f64)> = pts.iter().zip(radii).map(|(q, r)| (q[2], r)).collect();
    let base = bladder_e.centre[2] - b_semi[2];
    let front = interp(&knots_y, base) - interp(&knots_r, base);
    let yc = front - semi[1] + 3.0;
    // Under the bladder: the bladder's lower surface above the gland's centre, which
    // the gland's base indents by 40% of its height.
    let t = ((yc - bladder_e.centre[1]) / b_semi[1]).clamp(-1.0, 1.0);
    let floor = bladder_e.centre[2] - b_semi[2] * (1.0 - t * t).sqrt();
    let zc = floor - 0.6 * semi[2];
    let gland = Ellipsoid::aligned([rx, yc, zc], semi);
    let mut m = rasterize(&grid, gland.bounds(), |q| gland.contains(q));
    for side in [-1.0, 1.0] {
        let sv = Ellipsoid::aligned(
            [
                rx + side * 0.55 * semi[0],
                yc + 0.6 * semi[1],
                zc + semi[2] + 4.0,
            ],
            [12.0, 6.0, 9.0],
        );
        m = m.union(&rasterize(&grid, sv.bounds(), |q| sv.contains(q)))?;
    }
    Ok(m)
}

/// Parametria: the connective tissue lateral to cervix and upper vagina, out to the pelvic
/// side wall, between bladder and rectum.
fn parametria(
    f: Frame<'_>,
    cavity: &Mask,
    bladder: &Mask,
    rectum: &Mask,
    bones: &Bones,
    psoas: &Mask,
) -> Result<Mask> {
    let Frame { grid, p, s } = f;
    let du = p.uterus_shift_mm;
    let pelvic_bones = &bones.pelvic;
    let param_e = Ellipsoid::aligned(
        [du[0], 8.0 * s + du[1], -2.0 * s + du[2]],
        [54.0 * s, 18.0 * s, 22.0 * s],
    );
    let mut parametria =
        rasterize(&grid, param_e.bounds(), |q| param_e.contains(q)).intersection(cavity)?;
    for other in [&bladder, &rectum, &pelvic_bones, &psoas] {
        parametria.subtract_in_place(other)?;
    }
    if p.prostate_cc.is_some() {
        parametria = Mask::empty(grid);
    }
    Ok(parametria)
}

/// The nodal CTV: the grown vessel tubes and the presacral space, below the nodal top, off
/// bone and psoas, inside the muscle.
fn nodal_ctv(f: Frame<'_>, v: &Vessels, bones: &Bones, inner: &Mask) -> Result<Mask> {
    let Frame { grid, p, s } = f;
    let sacrum_front = |z: f64| sacrum_front(s, z);
    let (common_iliac, external_iliac, internal_iliac, obturator, femoral) = (
        &v.common_iliac,
        &v.external_iliac,
        &v.internal_iliac,
        &v.obturator,
        &v.femoral,
    );
    let (pelvic_bones, femur, psoas) = (&bones.pelvic, &bones.femur, &v.psoas);
    let m = p.nodal_margin_mm;
    let mut nodal_tubes = vec![
        common_iliac.grown(m),
        external_iliac.grown(m),
        internal_iliac.grown(m),
        obturator.grown(m + 2.0),
    ];
    if p.inguinal {
        // Inguinal nodes lie in a wider field around the femoral vessels.
        nodal_tubes.push(femoral.grown(m + 8.0));
    }
    let presacral = rasterize_slices(
        &grid,
        Bounds::new([-25.0, -50.0, 55.0 * s], [25.0, 120.0, 112.0 * s]),
        |z| Some(sacrum_front(z)),
        |&front, x, y| x.abs() <= 22.0 * s && y <= front && y >= front - 16.0,
    );
    let mut nodal = union_all(
        &grid,
        nodal_tubes
            .into_iter()
            .map(|t| bilateral(t, &grid))
            .chain([presacral]),
    );
    let top_nodes = rasterize(
        &grid,
        Bounds::new([-300.0, -300.0, p.nodal_top_mm * s], [300.0, 300.0, 300.0]),
        |_| true,
    );
    for other in [&top_nodes, pelvic_bones, femur, psoas] {
        nodal.subtract_in_place(other)?;
    }
    nodal = nodal.intersection(inner)?;

    Ok(nodal)
}

/// The bowel bag: the peritoneal space above the bladder's mid-height, less everything else,
/// kept off the nodal chains.
fn bowel_bag(
    f: Frame<'_>,
    cavity: &Mask,
    bladder_e: &Ellipsoid,
    b_semi: [f64; 3],
    organs: [&Mask; 5],
    v: &Vessels,
    pelvic_bones: &Mask,
) -> Result<Mask> {
    let grid = f.grid;
    let [bladder, uterus, cervix, rectum, parametria] = organs;
    let (vessels, psoas) = (&v.mask, &v.psoas);
    let (common_iliac, external_iliac, internal_iliac) = (
        v.common_iliac.clone(),
        v.external_iliac.clone(),
        v.internal_iliac.clone(),
    );
    let bowel_floor = bladder_e.centre[2] - 0.2 * b_semi[2];
    let mut bowel = cavity.intersection(&rasterize(
        &grid,
        Bounds::new([-300.0, -300.0, bowel_floor], [300.0, 300.0, 300.0]),
        |_| true,
    ))?;
    for other in [
        &bladder,
        &uterus,
        &cervix,
        &rectum,
        &parametria,
        &vessels,
        &psoas,
        &pelvic_bones,
    ] {
        bowel.subtract_in_place(other)?;
    }
    // Keep bowel off the nodal chains along the side walls (mesenteric fat separates them).
    let vessels_wide = union_all(
        &grid,
        [common_iliac, external_iliac, internal_iliac]
            .into_iter()
            .map(|t| bilateral(t.grown(4.0), &grid)),
    );
    bowel.subtract_in_place(&vessels_wide)?;
    Ok(bowel)
}

/// Where each tissue is, for the CT numbers.
struct TissueMap<'a> {
    external: &'a Mask,
    inner: &'a Mask,
    cavity: &'a Mask,
    bowel: &'a Mask,
    sigmoid: &'a Mask,
    parametria: &'a Mask,
    psoas: &'a Mask,
    vessels: &'a Mask,
    bladder: &'a Mask,
    uterus: &'a Mask,
    vagina: &'a Mask,
    cervix: &'a Mask,
    prostate: &'a Mask,
    rectum: &'a Mask,
    rectal_gas: &'a Mask,
    bones: &'a Bones,
}

/// CT numbers: each voxel's tissue painted in order (later tissues over earlier ones), bowel
/// loops from a smooth random field, per-tissue noise.
fn ct_numbers(f: Frame<'_>, t: &TissueMap<'_>) -> Vec<i16> {
    let Frame { grid, p, .. } = f;
    let TissueMap {
        external,
        inner,
        cavity,
        bowel,
        sigmoid,
        parametria,
        psoas,
        vessels,
        bladder,
        uterus,
        vagina,
        cervix,
        prostate,
        rectum,
        rectal_gas,
        bones,
    } = *t;
    let (pelvic_bones, femur, pelvic_marrow, femur_marrow, canal) = (
        &bones.pelvic,
        &bones.femur,
        &bones.pelvic_marrow,
        &bones.femur_marrow,
        &bones.canal,
    );
    let mut tissue = vec![Tissue::Air; grid.len()];
    let paint = |tissue: &mut Vec<Tissue>, m: &Mask, t: Tissue| {
        tissue
            .par_iter_mut()
            .zip(m.data().par_iter())
            .for_each(|(v, &inside)| {
                if inside {
                    *v = t;
                }
            });
    };
    paint(&mut tissue, external, Tissue::Fat);
    paint(&mut tissue, inner, Tissue::Muscle);
    paint(&mut tissue, cavity, Tissue::CavityFat);
    // Bowel loops: a smooth random field thresholded into soft-tissue loops, fat between
    // them and the odd gas bubble.
    let mut rng = SplitMix64::new(p.noise_seed ^ 0xB0E1);
    let phase: Vec<f64> = (0..6)
        .map(|_| rng.uniform([0.0, std::f64::consts::TAU]))
        .collect();
    let f = std::f64::consts::TAU / 38.0;
    let [nx, ny, _] = grid.dims;
    tissue
        .par_chunks_mut(nx * ny)
        .zip(
            bowel
                .data()
                .par_chunks(nx * ny)
                .map(|c| c.to_vec())
                .collect::<Vec<_>>(),
        )
        .enumerate()
        .for_each(|(k, (slab, mask))| {
            let z = grid.coord_mm(2, k);
            for (n, v) in slab.iter_mut().enumerate() {
                if !mask[n] {
                    continue;
                }
                let x = grid.coord_mm(0, n % nx);
                let y = grid.coord_mm(1, n / nx);
                let field = (f * x + phase[0]).sin() * (1.1 * f * y + phase[1]).sin()
                    + (0.9 * f * y + phase[2]).sin() * (f * z + phase[3]).sin()
                    + (1.2 * f * z + phase[4]).sin() * (0.8 * f * x + phase[5]).sin();
                *v = if field > 1.75 {
                    Tissue::BowelGas
                } else if field > -0.5 {
                    Tissue::BowelLoop
                } else {
                    Tissue::CavityFat
                };
            }
        });
    paint(&mut tissue, sigmoid, Tissue::Rectum);
    paint(&mut tissue, parametria, Tissue::Parametrium);
    paint(&mut tissue, psoas, Tissue::Muscle);
    paint(&mut tissue, vessels, Tissue::Vessel);
    paint(&mut tissue, bladder, Tissue::Urine);
    paint(&mut tissue, uterus, Tissue::Uterus);
    paint(&mut tissue, vagina, Tissue::Vagina);
    paint(&mut tissue, cervix, Tissue::Cervix);
    paint(&mut tissue, prostate, Tissue::Prostate);
    paint(&mut tissue, rectum, Tissue::Rectum);
    paint(&mut tissue, rectal_gas, Tissue::RectalGas);
    paint(&mut tissue, pelvic_bones, Tissue::Cortex);
    paint(&mut tissue, femur, Tissue::Cortex);
    paint(&mut tissue, pelvic_marrow, Tissue::Marrow);
    paint(&mut tissue, femur_marrow, Tissue::Marrow);
    paint(&mut tissue, canal, Tissue::Csf);
    // Nothing outside the body but air.
    tissue
        .par_iter_mut()
        .zip(external.data().par_iter())
        .for_each(|(t, &inside)| {
            if !inside {
                *t = Tissue::Air;
            }
        });
    let classes: Vec<(f64, f64)> = (0..=Tissue::Csf as u8)
        .map(|c| ALL_TISSUES[c as usize].hu(p))
        .collect();
    let ct_hu: Vec<i16> = tissue
        .par_iter()
        .enumerate()
        .map(|(n, &t)| {
            let (mean, amp) = classes[t as usize];
            (mean + amp * voxel_noise(p.noise_seed, n))
                .round()
                .clamp(-1024.0, 3071.0) as i16
        })
        .collect();
    ct_hu
}

/// Generates the patient `id` with voxel size `voxel_mm`.
pub fn generate(id: &str, p: &PelvisParams, voxel_mm: [f64; 3]) -> Result<Patient> {
    let s = p.scale;
    let body = BodyShape {
        w: p.body_half_width_mm,
        d: p.body_half_depth_mm,
        yc: 8.0,
    };
    let grid = Grid::covering(
        [-body.w - 12.0, body.yc - body.d - 12.0, -150.0],
        [body.w + 12.0, body.yc + body.d + 12.0, 215.0],
        voxel_mm,
    )?;
    let f = Frame { grid, p, s };
    let Outline {
        external,
        inner,
        cavity,
    } = outline(f, &body);
    let bones = bones(f, &inner)?;
    let vessels = muscles_and_vessels(f);
    let (bladder_e, b_semi) = bladder_shape(f);
    let gyn = gynaecological(f, &bladder_e, b_semi)?;
    let rectum = rectum(f);
    let (gyn, prostate) = match p.prostate_cc {
        None => (gyn, Mask::empty(grid)),
        Some(cc) => {
            let e = Mask::empty(grid);
            let empty = Gynaecological {
                uterus: e.clone(),
                cervix: e.clone(),
                vagina: e.clone(),
                upper_vagina: e,
            };
            (empty, prostate(f, cc, &rectum.pts, &bladder_e, b_semi)?)
        }
    };
    let mut bladder = rasterize(&grid, bladder_e.bounds(), |q| bladder_e.contains(q));
    for other in [
        &gyn.uterus,
        &gyn.cervix,
        &gyn.vagina,
        &prostate,
        &bones.pelvic,
        &rectum.mask,
    ] {
        bladder.subtract_in_place(other)?;
    }
    bladder = bladder.intersection(&inner)?;
    let parametria = parametria(f, &cavity, &bladder, &rectum.mask, &bones, &vessels.psoas)?;
    let nodal = nodal_ctv(f, &vessels, &bones, &inner)?;
    let mut ctv = if p.prostate_cc.is_some() {
        // Prostate and proximal seminal vesicles; the nodes are not treated.
        let mut c = prostate.clone();
        for other in [&rectum.mask, &bladder, &bones.pelvic] {
            c.subtract_in_place(other)?;
        }
        c
    } else {
        union_all(
            &grid,
            [
                gyn.uterus.clone(),
                gyn.cervix.clone(),
                gyn.upper_vagina.clone(),
                parametria.clone(),
                nodal,
            ],
        )
    };
    ctv = ctv.intersection(&external)?;
    let ctv = nonempty(
        ctv,
        id,
        "CTV",
        "union of uterus, cervix, upper vagina, parametria and nodes (or of prostate and \
         seminal vesicles)",
    )?;
    // PTV: CTV plus margin, kept 5 mm inside the skin (the build-up region is not optimized).
    let ptv =
        morph::expand(&ctv, p.ptv_margin_mm)?.intersection(&morph::contract(&external, 5.0)?)?;
    let ptv = nonempty(ptv, id, "PTV", "CTV expansion cropped to the body")?;
    let bowel = bowel_bag(
        f,
        &cavity,
        &bladder_e,
        b_semi,
        [
            &bladder,
            &gyn.uterus,
            &gyn.cervix,
            &rectum.mask,
            &parametria,
        ],
        &vessels,
        &bones.pelvic,
    )?;
    let ct_hu = ct_numbers(
        f,
        &TissueMap {
            external: &external,
            inner: &inner,
            cavity: &cavity,
            bowel: &bowel,
            sigmoid: &rectum.sigmoid,
            parametria: &parametria,
            psoas: &vessels.psoas,
            vessels: &vessels.mask,
            bladder: &bladder,
            uterus: &gyn.uterus,
            vagina: &gyn.vagina,
            cervix: &gyn.cervix,
            prostate: &prostate,
            rectum: &rectum.mask,
            rectal_gas: &rectum.gas,
            bones: &bones,
        },
    );
    let Bones {
        femur,
        pelvic_marrow,
        canal,
        ..
    } = bones;
    let (fh_c, _) = f.femoral_head();
    let rectum = rectum.mask;
    // ---- Structures ----------------------------------------------------------------------
    let mut patient = Patient::new(id, grid, ct_hu)?;
    let femur_head = |side: f64| -> Result<Mask> {
        // Femoral head and neck down to the lesser trochanter, as contoured for planning.
        let c = [side * fh_c[0], fh_c[1], fh_c[2]];
        let region = rasterize(&grid, Bounds::around(c, [60.0; 3]), |q| {
            q[0] * side > 0.0 && q[2] > c[2] - 40.0 * s && (q[0] - c[0]) * side < 26.0 * s
        });
        region.intersection(&femur)
    };
    let spinal_cord = canal.intersection(&rasterize(
        &grid,
        Bounds::new([-300.0, -300.0, 25.0 * s], [300.0, 300.0, 300.0]),
        |_| true,
    ))?;
    let bone_marrow = pelvic_marrow;
    let list = [
        ("External", Role::External, external),
        ("PTV", Role::Target, ptv),
        ("CTV", Role::Target, ctv),
        ("Bladder", Role::Oar, bladder),
        ("Rectum", Role::Oar, rectum),
        ("Bag_Bowel", Role::Oar, bowel),
        ("SpinalCord", Role::Oar, spinal_cord),
        ("BoneMarrow", Role::Oar, bone_marrow),
        ("Femur_Head_L", Role::Oar, femur_head(1.0)?),
        ("Femur_Head_R", Role::Oar, femur_head(-1.0)?),
    ];
    for (name, role, mask) in list {
        let mask = nonempty(mask, id, name, "phantom generation")?;
        patient.add_structure(Structure::new(name, role, mask))?;
    }
    Ok(patient)
}

const ALL_TISSUES: [Tissue; 18] = [
    Tissue::Air,
    Tissue::Fat,
    Tissue::Muscle,
    Tissue::CavityFat,
    Tissue::BowelLoop,
    Tissue::BowelGas,
    Tissue::Parametrium,
    Tissue::Vessel,
    Tissue::Urine,
    Tissue::Uterus,
    Tissue::Cervix,
    Tissue::Vagina,
    Tissue::Prostate,
    Tissue::Rectum,
    Tissue::RectalGas,
    Tissue::Marrow,
    Tissue::Cortex,
    Tissue::Csf,
];
