//! GEGLU, the UNet feed-forward's activation: `a * gelu(gate)` where `h = [a | gate]` is split
//! on the last dimension, as one pass with its backward. candle's path (two narrows, gelu_erf
//! through libm's scalar erf, a multiply, each a new tensor) was 12% of the Toyland UNet
//! forward in `perf`; here erf is a polynomial and e^x the branch-free one of `fast_exp`, which
//! the compiler vectorises (libm's expf, a scalar call, was 1.2% of a LoRA step).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fast_exp::exp;

/// `h` (.., 2n) -> (.., n).
pub fn geglu(h: &Tensor) -> Result<Tensor> {
    h.contiguous()?.apply_op1(Geglu)
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// Phi(x), the standard normal CDF: gelu(x) = x Phi(x).
fn cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Rows of `h` (width 2n) and the matching rows of a width-n tensor, in chunks of whole rows
/// large enough to be worth a task.
fn rows(l: &Layout) -> Result<(usize, usize)> {
    let w = l.dims().last().copied().unwrap_or(0);
    if w % 2 != 0 {
        candle_core::bail!("geglu: the last dimension ({w}) must be even");
    }
    let n = w / 2;
    Ok((n, (16_384 / w.max(1)).max(1)))
}

struct Geglu;

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "vstar-geglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let h = super::conv::f32_slice(s, l, "geglu")?;
        let (n, per_task) = rows(l)?;
        let mut y = vec![0f32; h.len() / 2];
        y.par_chunks_mut(n * per_task).zip(h.par_chunks(2 * n * per_task)).for_each(|(yc, hc)| {
            for (yr, hr) in yc.chunks_mut(n).zip(hc.chunks(2 * n)) {
                let (a, gate) = hr.split_at(n);
                for ((o, &a), &g) in yr.iter_mut().zip(a).zip(gate) {
                    *o = a * g * cdf(g);
                }
            }
        });
        let mut dims = l.dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, h: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(h.apply_op2_no_bwd(&dy.contiguous()?, &GegluGrad)?))
    }
}

/// (h, dy) -> dh: da = dy gelu(g), dg = dy a gelu'(g), gelu'(g) = Phi(g) + g phi(g).
struct GegluGrad;

impl CustomOp2 for GegluGrad {
    fn name(&self) -> &'static str {
        "vstar-geglu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (h, dy) = (super::conv::f32_slice(s1, l1, "geglu grad")?, super::conv::f32_slice(s2, l2, "geglu grad")?);
        let (n, per_task) = rows(l1)?;
        let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
        let mut dh = vec![0f32; h.len()];
        dh.par_chunks_mut(2 * n * per_task)
            .zip(h.par_chunks(2 * n * per_task))
            .zip(dy.par_chunks(n * per_task))
            .for_each(|((dc, hc), gc)| {
                for ((dr, hr), gr) in dc.chunks_mut(2 * n).zip(hc.chunks(2 * n)).zip(gc.chunks(n)) {
                    let (a, gate) = hr.split_at(n);
                    let (da, dg) = dr.split_at_mut(n);
                    for i in 0..n {
                        let (g, phi) = (gate[i], cdf(gate[i]));
                        da[i] = gr[i] * g * phi;
                        dg[i] = gr[i] * a[i] * (phi + g * inv_sqrt_2pi * exp(-0.5 * g * g));
                    }
                }
            });
        Ok((CpuStorage::F32(dh), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var, D};

    /// Values and gradient equal candle's composed `a * gelu_erf(gate)`, on a strided input
    /// with large and small gate values.
    #[test]
    fn matches_candle_geglu_and_its_gradient() {
        let dev = Device::Cpu;
        let v = Var::randn(0f32, 3.0, (2, 8, 5), &dev).unwrap();
        let h = v.as_tensor().transpose(1, 2).unwrap(); // (2, 5, 8), strided
        let half = h.dim(D::Minus1).unwrap() / 2;
        let theirs = (h.narrow(2, 0, half).unwrap() * h.narrow(2, half, half).unwrap().gelu_erf().unwrap()).unwrap();
        let ours = geglu(&h).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5, "values differ by {}", max_diff(&ours, &theirs));
        let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let e = max_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
        assert!(e < 1e-5, "gradient differs by {e}");
    }

    #[test]
    fn erf_is_close_to_known_values() {
        // erf(0.5), erf(1), erf(2) to f32 precision; erf is odd.
        for (x, want) in [(0.5f32, 0.520_499_9f32), (1.0, 0.842_700_8), (2.0, 0.995_322_3), (0.0, 0.0)] {
            assert!((erf(x) - want).abs() < 3e-7 && (erf(-x) + want).abs() < 3e-7, "erf({x}) = {}", erf(x));
        }
    }
}
