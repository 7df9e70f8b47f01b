//! A small seeded random source (xoshiro256++ seeded by SplitMix64) and the distributions the
//! simulator draws from. Written out here so a seed gives the same run on every build.

/// xoshiro256++.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed` and `stream` (independent streams from one seed).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_mul(0xd134_2543_de82_ef95);
        Rng { s: [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Exponential with mean `mean`.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.uniform().ln()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma with `shape` and `scale` (Marsaglia and Tsang; shapes below 1 by boosting).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform();
            return self.gamma(shape + 1.0, scale) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v * scale;
            }
        }
    }

    /// Log-normal factor with mean 1 and coefficient of variation `cv` (1 when `cv` is 0).
    pub fn unit_lognormal(&mut self, cv: f64) -> f64 {
        if cv <= 0.0 {
            return 1.0;
        }
        let s2 = (1.0 + cv * cv).ln();
        (self.normal() * s2.sqrt() - s2 / 2.0).exp()
    }

    /// An index drawn with probability proportional to `weights`.
    pub fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if x <= *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    fn moments(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut r = Rng::new(7, 0);
        let exp: Vec<f64> = (0..200_000).map(|_| r.exponential(3.0)).collect();
        let (m, cv) = moments(&exp);
        assert!((m - 3.0).abs() < 0.05 && (cv - 1.0).abs() < 0.02, "exponential mean {m} cv {cv}");
        for (shape, want_cv) in [(0.25, 2.0), (1.0 / 9.0, 3.0), (4.0, 0.5)] {
            let g: Vec<f64> = (0..200_000).map(|_| r.gamma(shape, 2.0 / shape)).collect();
            let (m, cv) = moments(&g);
            assert!((m - 2.0).abs() < 0.1 && (cv - want_cv).abs() < 0.1 * want_cv, "gamma {shape}: {m} {cv}");
        }
        let l: Vec<f64> = (0..200_000).map(|_| r.unit_lognormal(0.2)).collect();
        let (m, cv) = moments(&l);
        assert!((m - 1.0).abs() < 0.01 && (cv - 0.2).abs() < 0.01, "lognormal {m} {cv}");
    }

    #[test]
    fn a_seed_gives_one_sequence() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(1, 2);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(1, 2);
        assert!(a.iter().all(|&x| x == r.next_u64()));
        assert_ne!(Rng::new(1, 3).next_u64(), a[0]);
    }
}
