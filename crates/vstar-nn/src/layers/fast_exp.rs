//! e^x without branches, so that loops over rows vectorise (libm's expf is a scalar call):
//! the fused attention's softmax, the fused GroupNorm + SiLU and GEGLU use it.

/// x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor series to r^7 (truncation below 6e-9
/// relative), 2^n written into the exponent bits. Below -87 it returns 0, where 2^n would
/// leave the normal range; above 88 it returns e^88 (the largest power that stays finite);
/// NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LO: f32 = -87.0;
    const HI: f32 = 88.0;
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75; // few significant bits: n * LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Comparisons, not min/max: those would turn NaN into the bound.
    let xc = if x < LO {
        LO
    } else if x > HI {
        HI
    } else {
        x
    };
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // Zero below LO (NaN stays NaN) by a bit mask: a branch here would stop the vectorising.
    let keep = ((x < LO) as u32).wrapping_sub(1);
    f32::from_bits((p * pow2).to_bits() & keep)
}

/// SiLU, v * sigmoid(v), through `exp`: 0 for v below -88, where e^-v is clamped.
#[inline(always)]
pub(crate) fn silu(v: f32) -> f32 {
    v / (1.0 + exp(-v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_libm() {
        for i in 0..=40_000 {
            let x = -90.0 + 180.0 * i as f32 / 40_000.0;
            let (ours, want) = (exp(x), (x as f64).exp());
            let ok = match x {
                x if x < -87.0 => ours == 0.0,
                x if x > 88.0 => ours == exp(88.0),
                _ => ((ours as f64 - want) / want).abs() < 3e-7,
            };
            assert!(ok, "exp({x}) = {ours}, want {want}");
        }
        assert!(exp(f32::NAN).is_nan() && exp(f32::NEG_INFINITY) == 0.0 && exp(f32::INFINITY).is_finite());
    }

    #[test]
    fn silu_is_close_to_the_formula() {
        for i in 0..=40_000 {
            let v = -100.0 + 200.0 * i as f32 / 40_000.0;
            let want = v as f64 / (1.0 + (-(v as f64)).exp());
            let ours = silu(v) as f64;
            assert!((ours - want).abs() <= 4e-7 * want.abs() + 1e-30, "silu({v}) = {ours}, want {want}");
        }
        assert!(silu(f32::NAN).is_nan());
    }
}
