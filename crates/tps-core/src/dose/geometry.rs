//! Beam geometry: coplanar beams around an isocentre, the beam's-eye-view frame, and beamlet
//! (bixel) grids.
//!
//! Gantry angles follow IEC 61217 for a supine, head-first patient: at 0 degrees the source is
//! anterior (negative y in LPS), at 90 degrees on the patient's left (positive x). The
//! beam's-eye-view coordinates `(a, c)` are lateral positions in the isocentre plane; at
//! collimator 0, `a` lies along `(cos g, sin g, 0)` and `c` along the patient's superior axis.
//! A collimator angle `θ` turns both about the beam axis: `a' = cos θ a + sin θ c`,
//! `c' = -sin θ a + cos θ c`, so at 90 degrees the beamlet rows (MLC leaves) run along the
//! couch axis.

use tps_api::beams::Beams;

/// A point or vector in patient coordinates, mm.
pub type P3 = [f64; 3];

/// A static beam.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beam {
    /// Gantry angle, degrees (IEC 61217).
    pub gantry_deg: f64,
    /// Isocentre in patient coordinates, mm.
    pub iso_mm: P3,
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    /// Collimator angle, degrees.
    pub collimator_deg: f64,
}

/// Where a point lies in a beam's frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BevPoint {
    /// Lateral position projected to the isocentre plane, along the gantry-plane axis, mm.
    pub a: f64,
    /// Lateral position projected to the isocentre plane, along the couch axis, mm.
    pub c: f64,
    /// Distance from the source along the central axis, mm.
    pub t: f64,
    /// Distance from the source to the point, mm.
    pub l: f64,
}

impl Beam {
    /// Source position, mm.
    pub fn source(&self) -> P3 {
        let (s, c) = self.gantry_deg.to_radians().sin_cos();
        [
            self.iso_mm[0] + self.sad_mm * s,
            self.iso_mm[1] - self.sad_mm * c,
            self.iso_mm[2],
        ]
    }

    /// Unit vector from the source towards the isocentre.
    pub fn axis(&self) -> P3 {
        let (s, c) = self.gantry_deg.to_radians().sin_cos();
        [-s, c, 0.0]
    }

    /// Unit lateral axes of the isocentre plane, `(e_a, e_c)`, turned by the collimator.
    pub fn lateral(&self) -> (P3, P3) {
        let (s, c) = self.gantry_deg.to_radians().sin_cos();
        let (sk, ck) = self.collimator_deg.to_radians().sin_cos();
        // Collimator 0: e_a = (c, s, 0), e_c = (0, 0, 1).
        ([ck * c, ck * s, sk], [-sk * c, -sk * s, ck])
    }

    /// The point in the beam's frame (`t > 0` in front of the source).
    #[inline]
    pub fn bev(&self, p: P3) -> BevPoint {
        let s = self.source();
        let v = [p[0] - s[0], p[1] - s[1], p[2] - s[2]];
        let u = self.axis();
        let (ea, ec) = self.lateral();
        let t = v[0] * u[0] + v[1] * u[1] + v[2] * u[2];
        let k = self.sad_mm / t;
        BevPoint {
            a: (v[0] * ea[0] + v[1] * ea[1] + v[2] * ea[2]) * k,
            c: (v[0] * ec[0] + v[1] * ec[1] + v[2] * ec[2]) * k,
            t,
            l: (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt(),
        }
    }

    /// Unit direction from the source through isocentre-plane point `(a, c)`.
    pub fn ray_direction(&self, a: f64, c: f64) -> P3 {
        let u = self.axis();
        let (ea, ec) = self.lateral();
        let d = [
            self.sad_mm * u[0] + a * ea[0] + c * ec[0],
            self.sad_mm * u[1] + a * ea[1] + c * ec[1],
            self.sad_mm * u[2] + a * ea[2] + c * ec[2],
        ];
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        [d[0] / n, d[1] / n, d[2] / n]
    }
}

/// The static beams of `beams` around `iso_mm`, arc after arc, in the order of
/// [`Beams::gantry_angles`].
pub fn beams_of(beams: &Beams, iso_mm: P3, sad_mm: f64) -> Vec<Beam> {
    beams
        .gantry_angles()
        .into_iter()
        .flatten()
        .map(|gantry_deg| Beam {
            gantry_deg,
            iso_mm,
            sad_mm,
            collimator_deg: beams.collimator_deg,
        })
        .collect()
}

/// A rectangular grid of square beamlets in a beam's isocentre plane, with a weight (MU) per
/// beamlet.
#[derive(Debug, Clone, PartialEq)]
pub struct FluenceMap {
    /// The beam.
    pub beam: Beam,
    /// Beamlet side at the isocentre, mm.
    pub bixel_mm: f64,
    /// Centre of beamlet (0, 0) in `(a, c)`, mm.
    pub origin: [f64; 2],
    /// Beamlets along `a` and `c`.
    pub dims: [usize; 2],
    /// Weights, `a` fastest; monitor units per beamlet.
    pub weights: Vec<f64>,
}

impl FluenceMap {
    /// A uniform open field of `width_a x width_c` mm at the isocentre, centred on the axis,
    /// tiled exactly by beamlets of `bixel_mm`, each weighted `mu`.
    pub fn open_field(beam: Beam, width_a: f64, width_c: f64, bixel_mm: f64, mu: f64) -> Self {
        let na = (width_a / bixel_mm).round().max(1.0) as usize;
        let nc = (width_c / bixel_mm).round().max(1.0) as usize;
        Self {
            beam,
            bixel_mm,
            origin: [
                -(na as f64 - 1.0) * bixel_mm / 2.0,
                -(nc as f64 - 1.0) * bixel_mm / 2.0,
            ],
            dims: [na, nc],
            weights: vec![mu; na * nc],
        }
    }

    /// Centre `(a, c)` of beamlet `(i, j)`.
    pub fn centre(&self, i: usize, j: usize) -> [f64; 2] {
        [
            self.origin[0] + i as f64 * self.bixel_mm,
            self.origin[1] + j as f64 * self.bixel_mm,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gantry_zero_is_anterior_and_ninety_is_left() {
        let b = Beam {
            gantry_deg: 0.0,
            iso_mm: [0.0; 3],
            sad_mm: 1000.0,
            collimator_deg: 0.0,
        };
        assert_eq!(b.source(), [0.0, -1000.0, 0.0]);
        let b90 = Beam {
            gantry_deg: 90.0,
            ..b
        };
        let s = b90.source();
        assert!((s[0] - 1000.0).abs() < 1e-9 && s[1].abs() < 1e-9);
        // A point 10 mm deep past the isocentre, 20 mm lateral: projected back to the iso plane.
        let p = b.bev([20.0, 10.0, -5.0]);
        assert!((p.t - 1010.0).abs() < 1e-9);
        assert!((p.a - 20.0 * 1000.0 / 1010.0).abs() < 1e-9);
        assert!((p.c + 5.0 * 1000.0 / 1010.0).abs() < 1e-9);
        let d = b.ray_direction(p.a, p.c);
        let s = b.source();
        let back = [s[0] + d[0] * p.l, s[1] + d[1] * p.l, s[2] + d[2] * p.l];
        assert!(
            (back[0] - 20.0).abs() < 1e-9
                && (back[1] - 10.0).abs() < 1e-9
                && (back[2] + 5.0).abs() < 1e-9
        );
    }

    #[test]
    fn two_arcs_interleave() {
        let beams = beams_of(&Beams::full_arcs(2, 36), [0.0; 3], 1000.0);
        assert_eq!(beams.len(), 72);
        assert_eq!(beams[0].gantry_deg, 0.0);
        assert_eq!(beams[36].gantry_deg, 5.0);
        let f = FluenceMap::open_field(beams[0], 100.0, 100.0, 5.0, 1.0);
        assert_eq!(f.dims, [20, 20]);
        assert_eq!(f.centre(0, 0), [-47.5, -47.5]);
    }

    /// The collimator turns the lateral axes about the beam axis and leaves the frame
    /// orthonormal: at 90 degrees a point towards the head lies on `+a`, at any gantry.
    #[test]
    fn the_collimator_turns_the_beamlet_lattice_about_the_axis() {
        for gantry_deg in [0.0, 37.0, 90.0, 211.0] {
            for collimator_deg in [0.0, 30.0, 90.0, 270.0] {
                let b = Beam {
                    gantry_deg,
                    iso_mm: [3.0, -4.0, 5.0],
                    sad_mm: 1000.0,
                    collimator_deg,
                };
                let (ea, ec) = b.lateral();
                let u = b.axis();
                let dot = |x: P3, y: P3| x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
                for (x, y, want) in [
                    (ea, ea, 1.0),
                    (ec, ec, 1.0),
                    (ea, ec, 0.0),
                    (ea, u, 0.0),
                    (ec, u, 0.0),
                ] {
                    assert!(
                        (dot(x, y) - want).abs() < 1e-12,
                        "{gantry_deg} {collimator_deg}"
                    );
                }
                // Round trip: a BEV point goes back to the same patient point.
                let p = [23.0, 11.0, -17.0];
                let v = b.bev(p);
                let d = b.ray_direction(v.a, v.c);
                let s = b.source();
                for i in 0..3 {
                    assert!((s[i] + d[i] * v.l - p[i]).abs() < 1e-9);
                }
            }
            let b = Beam {
                gantry_deg,
                iso_mm: [0.0; 3],
                sad_mm: 1000.0,
                collimator_deg: 90.0,
            };
            let head = b.bev([0.0, 0.0, 10.0]);
            assert!(
                (head.a - 10.0).abs() < 1e-9 && head.c.abs() < 1e-9,
                "{head:?}"
            );
        }
    }
}
