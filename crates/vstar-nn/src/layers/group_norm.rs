//! GroupNorm as fused CPU kernels with their backward. candle's GroupNorm is a chain of ~10
//! element-wise ops (each a pass over memory and an allocation), forward and backward; this
//! is one pass for the statistics and one for the output, with the gradient in closed form.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use super::fast_exp::{exp, silu};
use super::lanes::{lane_sum, mean_rstd};
use super::linear::{forward_folded, DeltaList, Slots};

#[derive(Debug, Clone, Copy)]
struct Dims {
    groups: usize,
    /// Channels per group.
    cpg: usize,
    /// Elements per channel (the spatial size).
    hw: usize,
    eps: f64,
}

impl Dims {
    fn of(l: &Layout, groups: usize, eps: f64) -> Result<Self> {
        let d = l.dims();
        if d.len() < 3 || d[1] % groups != 0 {
            candle_core::bail!("group norm: input {d:?} must be (B, C, ...) with C divisible by {groups}");
        }
        Ok(Self { groups, cpg: d[1] / groups, hw: d[2..].iter().product(), eps })
    }

    fn group_len(&self) -> usize {
        self.cpg * self.hw
    }

    /// For each channel of group `bg` (a batch-group index): its element range within the
    /// group and the (a, b) with which the norm's output is a x + b.
    fn affine<'a>(
        &self,
        bg: usize,
        (mean, rstd): (f32, f32),
        gamma: &'a [f32],
        beta: &'a [f32],
    ) -> impl Iterator<Item = (std::ops::Range<usize>, f32, f32)> + 'a {
        let (c0, hw) = ((bg % self.groups) * self.cpg, self.hw);
        (0..self.cpg).map(move |c| {
            let a = gamma[c0 + c] * rstd;
            (c * hw..(c + 1) * hw, a, beta[c0 + c] - mean * a)
        })
    }

    /// Mean and reciprocal standard deviation of one group's elements.
    fn stats(&self, x: &[f32]) -> (f32, f32) {
        mean_rstd(x, self.eps)
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    super::conv::f32_slice(s, l, "group norm")
}

/// y = (x - mean) * rstd * gamma + beta, per (batch, group); with `silu`, SiLU(y) in the same
/// pass (every ResnetBlock norm is followed by one).
#[derive(Clone, Copy)]
struct Forward {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// dx from (x, gamma, dy); with `silu`, from (x, [gamma; beta] (2, C), dy) for dy the gradient
/// after the fused SiLU, taken through it on the fly (a frozen norm needs no other gradient, so
/// the one between SiLU and norm is never stored).
struct GradInput {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// dgamma (C,) = sum over batch and space of dy * xhat, from (x, dy).
struct GradGamma {
    groups: usize,
    eps: f64,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "vstar-group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1, self.groups, self.eps)?;
        let (x, gamma, beta) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d.group_len()).zip(x.par_chunks(d.group_len())).enumerate().for_each(|(bg, (yg, xg))| {
            for (r, a, b) in d.affine(bg, d.stats(xg), gamma, beta) {
                let ys = yg[r.clone()].iter_mut().zip(&xg[r]);
                if self.silu {
                    ys.for_each(|(yo, &xi)| *yo = silu(xi * a + b));
                } else {
                    ys.for_each(|(yo, &xi)| *yo = xi * a + b);
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (groups, eps) = (self.groups, self.eps);
        let (dy, frozen) = (dy.contiguous()?, !gamma.track_op() && !beta.track_op());
        let affine = self.silu.then(|| Tensor::stack(&[gamma, beta], 0)).transpose()?;
        let dy = match &affine {
            Some(affine) if frozen => {
                let dx = x.track_op().then(|| x.apply_op3_no_bwd(affine, &dy, &GradInput { groups, eps, silu: true }));
                return Ok((dx.transpose()?, None, None));
            }
            Some(affine) => x.apply_op3_no_bwd(affine, &dy, &SiluGrad { groups, eps })?,
            None => dy,
        };
        // Only what is tracked: in LoRA or TI runs the norms' gain and shift are frozen, and a
        // returned gradient would also cost candle a zero tensor to add it to.
        let dx = x
            .track_op()
            .then(|| x.apply_op3_no_bwd(gamma, &dy, &GradInput { groups, eps, silu: false }))
            .transpose()?;
        let dgamma = gamma.track_op().then(|| x.apply_op2_no_bwd(&dy, &GradGamma { groups, eps })).transpose()?;
        let dbeta = beta.track_op().then(|| super::bias::channel_sum(&dy, 1)).transpose()?;
        Ok((dx, dgamma, dbeta))
    }
}

/// The gradient through the fused SiLU, from (x, [gamma; beta] (2, C), dy): dy s(u) (1 + u (1 -
/// s(u))) with u the norm's output recomputed and s the sigmoid, in one pass.
struct SiluGrad {
    groups: usize,
    eps: f64,
}

/// d SiLU(u) / du = s(u) (1 + u (1 - s(u))), s the sigmoid.
fn silu_slope(u: f32) -> f32 {
    let s = 1.0 / (1.0 + exp(-u));
    s * (1.0 + u * (1.0 - s))
}

/// One group's `dy` (the gradient after the fused SiLU) taken back through it into `out`:
/// dy * SiLU'(u), u the norm's output recomputed from `xg` and the group's `stats`.
fn through_silu(
    d: &Dims,
    bg: usize,
    stats: (f32, f32),
    (gamma, beta): (&[f32], &[f32]),
    (xg, dyg): (&[f32], &[f32]),
    out: &mut [f32],
) {
    for (r, a, b) in d.affine(bg, stats, gamma, beta) {
        for ((o, &xi), &g) in out[r.clone()].iter_mut().zip(&xg[r.clone()]).zip(&dyg[r]) {
            *o = g * silu_slope(xi * a + b);
        }
    }
}

impl CustomOp3 for SiluGrad {
    fn name(&self) -> &'static str {
        "vstar-group-norm-silu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1, self.groups, self.eps)?;
        let (x, affine, dy) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let (gamma, beta) = affine.split_at(affine.len() / 2);
        let n = d.group_len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n).zip(dy.par_chunks(n)))
            .enumerate()
            .for_each(|(bg, (og, (xg, dyg)))| through_silu(&d, bg, d.stats(xg), (gamma, beta), (xg, dyg), og));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

impl CustomOp3 for GradInput {
    fn name(&self) -> &'static str {
        "vstar-group-norm-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1, self.groups, self.eps)?;
        let (x, affine, dy) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let (gamma, beta) = if self.silu { affine.split_at(affine.len() / 2) } else { (affine, &[][..]) };
        let n = d.group_len();
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(n).zip(x.par_chunks(n).zip(dy.par_chunks(n))).enumerate().for_each_init(
            Vec::new,
            |through, (bg, (dxg, (xg, dyg)))| {
                let stats = d.stats(xg);
                let (mean, rstd) = stats;
                let c0 = (bg % d.groups) * d.cpg;
                // The gradient before the SiLU, in a per-thread buffer.
                let dyg = if self.silu {
                    through.resize(n, 0.0);
                    through_silu(&d, bg, stats, (gamma, beta), (xg, dyg), through);
                    &through[..]
                } else {
                    dyg
                };
                // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), with g = dy * gamma.
                // Channel by channel, so each element's gain is known without a division.
                let channels = xg.chunks(d.hw).zip(dyg.chunks(d.hw)).zip(&gamma[c0..c0 + d.cpg]);
                let (mut sg, mut sgx) = (0f64, 0f64);
                for ((xc, dyc), &gc) in channels {
                    let g = |i: usize| (dyc[i] * gc) as f64;
                    sg += lane_sum(d.hw, g);
                    sgx += lane_sum(d.hw, |i| g(i) * ((xc[i] - mean) * rstd) as f64);
                }
                let (mg, mgx) = ((sg / n as f64) as f32, (sgx / n as f64) as f32);
                for c in 0..d.cpg {
                    for i in c * d.hw..(c + 1) * d.hw {
                        let xhat = (xg[i] - mean) * rstd;
                        dxg[i] = rstd * (dyg[i] * gamma[c0 + c] - mg - xhat * mgx);
                    }
                }
            },
        );
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

impl CustomOp2 for GradGamma {
    fn name(&self) -> &'static str {
        "vstar-group-norm-grad-gamma"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1, self.groups, self.eps)?;
        let (x, dy) = (slice(s1, l1)?, slice(s2, l2)?);
        let n = d.group_len();
        let channels = d.groups * d.cpg;
        // Per (batch, group): the group's channels' sums; then add over the batch.
        let parts: Vec<(usize, Vec<f64>)> = x
            .par_chunks(n)
            .zip(dy.par_chunks(n))
            .enumerate()
            .map(|(bg, (xg, dyg))| {
                let (mean, rstd) = d.stats(xg);
                let sums = (0..d.cpg)
                    .map(|c| {
                        let (xc, dyc) = (&xg[c * d.hw..(c + 1) * d.hw], &dyg[c * d.hw..(c + 1) * d.hw]);
                        lane_sum(d.hw, |i| (dyc[i] * (xc[i] - mean) * rstd) as f64)
                    })
                    .collect();
                ((bg % d.groups) * d.cpg, sums)
            })
            .collect();
        let mut out = vec![0f64; channels];
        for (c0, sums) in parts {
            for (c, s) in sums.into_iter().enumerate() {
                out[c0 + c] += s;
            }
        }
        Ok((CpuStorage::F32(out.into_iter().map(|v| v as f32).collect()), Shape::from(channels)))
    }
}

#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
    /// Adapter deltas on the gain `weight`; empty unless `adapted`.
    deltas: DeltaList,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, groups, eps, deltas: DeltaList::default() })
    }

    /// A GroupNorm whose gain adapters (SVDiff's 1-D shifts, full fine-tunes) attach to via `slots`.
    pub fn adapted(groups: usize, channels: usize, eps: f64, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        let name = vb.prefix();
        let mut norm = Self::new(groups, channels, eps, vb)?;
        norm.deltas = slots.register(name, &norm.weight)?;
        Ok(norm)
    }

    fn normalize(&self, x: &Tensor, gain: &Tensor, shift: &Tensor) -> Result<Tensor> {
        x.apply_op3(gain, shift, Forward { groups: self.groups, eps: self.eps, silu: false })
    }

    /// SiLU(GroupNorm(x)), fused into one pass unless adapter deltas fold into the gain.
    pub fn forward_silu(&self, x: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        if !self.deltas.read().unwrap().is_empty() {
            return self.forward_scaled(x, scale)?.silu();
        }
        x.contiguous()?.apply_op3(&self.weight, &self.bias, Forward { groups: self.groups, eps: self.eps, silu: true })
    }

    /// `scale`: one adapter strength per batch row (B,); None = strength 1.
    pub fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        let x = x.contiguous()?;
        let full = |g: &Tensor| self.normalize(&x, g, &self.bias);
        let part = |dg: &Tensor| self.normalize(&x, dg, &self.bias.zeros_like()?);
        forward_folded(&self.deltas, &self.weight, scale, full, part)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_scaled(x, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var};

    /// A 4-group norm over 8 channels with random gain and bias, and its input; all tracked.
    fn setup(shape: (usize, usize, usize, usize)) -> (GroupNorm, [Var; 3]) {
        let dev = Device::Cpu;
        let x = Var::randn(0.5f32, 2.0, shape, &dev).unwrap();
        let w = Var::randn(1f32, 0.5, 8, &dev).unwrap();
        let b = Var::randn(0f32, 0.5, 8, &dev).unwrap();
        let norm = GroupNorm {
            weight: w.as_tensor().clone(),
            bias: b.as_tensor().clone(),
            groups: 4,
            eps: 1e-5,
            deltas: DeltaList::default(),
        };
        (norm, [x, w, b])
    }

    /// The largest gradient difference of x, gain and bias between two outputs (same probe).
    fn gradient_gap(a: Tensor, b: Tensor, vars: &[Var; 3]) -> f32 {
        let probe = Tensor::randn(0f32, 1.0, a.shape(), a.device()).unwrap();
        let ga = (a * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        vars.iter()
            .map(|v| max_diff(ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap()))
            .fold(0.0, f32::max)
    }

    /// Output and all three gradients equal candle's composed GroupNorm.
    #[test]
    fn matches_candle_group_norm_and_its_gradients() {
        let (ours, [x, w, b]) = setup((3, 8, 5, 4));
        let theirs = candle_nn::GroupNorm::new(w.as_tensor().clone(), b.as_tensor().clone(), 8, 4, 1e-5).unwrap();
        let (yo, yt) = (ours.forward(x.as_tensor()).unwrap(), theirs.forward(x.as_tensor()).unwrap());
        assert!(max_diff(&yo, &yt) < 1e-5);
        let e = gradient_gap(yo, yt, &[x, w, b]);
        assert!(e < 1e-4, "gradients differ by {e}");
    }

    /// The fused SiLU(GroupNorm(x)) equals the two ops in turn, values and all gradients.
    #[test]
    fn fused_silu_matches_norm_then_silu() {
        let (norm, vars) = setup((2, 8, 3, 5));
        let fused = norm.forward_silu(vars[0].as_tensor(), None).unwrap();
        let apart = norm.forward(vars[0].as_tensor()).unwrap().silu().unwrap();
        // The fused SiLU's e^x is a polynomial (vectorisable), candle's is libm's.
        let e = max_diff(&fused, &apart);
        assert!(e < 1e-6, "values differ by {e}");
        let e = gradient_gap(fused, apart, &vars);
        assert!(e < 1e-5, "gradients differ by {e}");
    }

    /// With the gain and shift frozen (a LoRA run), only x gets a gradient, through the SiLU in
    /// the same op, and it equals the two-op path's (SiluGrad, then GradInput).
    #[test]
    fn frozen_affine_gets_no_gradient() {
        let (mut norm, [x, w, b]) = setup((2, 8, 3, 5));
        let probe = Tensor::randn(0f32, 1.0, x.shape(), x.device()).unwrap();
        let dx = |norm: &GroupNorm| {
            let g = (norm.forward_silu(x.as_tensor(), None).unwrap() * &probe).unwrap().sum_all().unwrap();
            g.backward().unwrap()
        };
        let tracked = dx(&norm);
        (norm.weight, norm.bias) = (w.as_tensor().detach(), b.as_tensor().detach());
        let frozen = dx(&norm);
        assert!(frozen.get(&norm.weight).is_none() && frozen.get(&norm.bias).is_none());
        assert_eq!(max_diff(tracked.get(x.as_tensor()).unwrap(), frozen.get(x.as_tensor()).unwrap()), 0.0);
    }
}
