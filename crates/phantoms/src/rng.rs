//! A small, seeded, platform-independent random source for phantom generation (and the
//! simulated delivery errors of `autoplan qa`).
//!
//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014): one 64-bit state, full period, and the same sequence on every machine, which is
//! what a reproducible cohort needs. It is not for cryptography.

/// Seeded SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi]`.
    pub fn uniform(&mut self, [lo, hi]: [f64; 2]) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A standard normal deviate (Box-Muller, one of the pair per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The SplitMix64 output function: a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic value in `[-1, 1]` for voxel `index` under `seed`, roughly bell-shaped
/// (the mean of two uniforms, a triangular distribution with standard deviation 1/sqrt(6)).
/// Used for image noise without a sequential generator, so slices can be filled in parallel.
#[inline]
pub fn voxel_noise(seed: u64, index: usize) -> f64 {
    let h = mix64(seed ^ (index as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let a = (h & 0xFFFF_FFFF) as f64 / u32::MAX as f64;
    let b = (h >> 32) as f64 / u32::MAX as f64;
    a + b - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_fixed() {
        // First outputs of SplitMix64 from seed 0, as published with the reference C code.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            let v = r.uniform([2.0, 3.0]);
            assert!((2.0..=3.0).contains(&v));
        }
        for i in 0..1000 {
            let n = voxel_noise(3, i);
            assert!((-1.0..=1.0).contains(&n));
        }
    }
}
