//! Monitor units of a fluence map delivered by a sliding-window MLC.
//!
//! With collimator 0 the leaves travel along the beam's-eye-view `a` axis and each leaf pair
//! covers one row of beamlets (fixed `c`). A unidirectional sliding window delivers a row's
//! fluence profile in a number of MU equal to the sum of its positive increments along the
//! travel direction (Svensson, Kallman and Brahme, Phys Med Biol 39:37, 1994; Spirou and Chui,
//! Med Phys 21:1031, 1994); the beam needs as many MU as its most demanding leaf pair. An open
//! field of weight w needs w MU; modulation adds MU.

use crate::dose::geometry::FluenceMap;

/// MU to deliver `field` (weights in MU) with a sliding window.
pub fn sliding_window_mu(field: &FluenceMap) -> f64 {
    let [na, nc] = field.dims;
    (0..nc)
        .map(|j| {
            let row = &field.weights[j * na..(j + 1) * na];
            let mut prev = 0.0;
            let mut sum = 0.0;
            for &w in row {
                let w = w.max(0.0);
                if w > prev {
                    sum += w - prev;
                }
                prev = w;
            }
            sum
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dose::geometry::Beam;

    #[test]
    fn open_field_needs_its_weight_and_modulation_adds() {
        let beam = Beam {
            gantry_deg: 0.0,
            iso_mm: [0.0; 3],
            sad_mm: 1000.0,
            collimator_deg: 0.0,
        };
        let mut f = FluenceMap::open_field(beam, 50.0, 50.0, 5.0, 2.0);
        assert_eq!(sliding_window_mu(&f), 2.0);
        // A ramp up then down in one row: increments 1 + 2 on top of the base 1.
        f.weights[..10].copy_from_slice(&[1.0, 2.0, 2.0, 4.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(sliding_window_mu(&f), 4.0);
        // A checkerboard of 1 and 3 needs 1 + 2 per rise: five rises of 2 plus 1.
        for (k, w) in f.weights.iter_mut().enumerate() {
            *w = if (k % 10 + k / 10) % 2 == 0 { 1.0 } else { 3.0 };
        }
        assert_eq!(sliding_window_mu(&f), 1.0 + 2.0 * 5.0);
    }
}
