//! LayerNorm over the last dimension as one op with its backward in closed form. candle's
//! differentiable LayerNorm is nine element-wise ops (means, centring, variance, square root,
//! division, gain, shift); in a LoRA step each is a pass forward, one or two backward and a zero
//! fill and an add in candle's gradient store, for the transformer blocks' three norms each.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::conv::f32_slice;
use super::lanes::{lane_sum, mean_rstd};

/// Rows per parallel task: a row is one token's channels (a few hundred values).
const ROWS_PER_TASK: usize = 32;

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension of `x`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return composed(x, weight, bias, eps);
    }
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, Forward { eps })
}

/// The same from candle's element-wise ops: other dtypes and devices, and the tests' reference.
fn composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    xn.broadcast_mul(weight)?.broadcast_add(bias)
}

/// The row length of `x`, checked against the `weight` values it must match.
fn row_len(l: &Layout, weight: usize) -> Result<usize> {
    let d = l.dims().last().copied().unwrap_or(0);
    if d == 0 || d != weight {
        candle_core::bail!("layer norm: input {:?} does not end in the weight's {weight} values", l.dims());
    }
    Ok(d)
}

struct Forward {
    eps: f64,
}

/// dx from (x, weight, dy).
struct GradInput {
    eps: f64,
}

/// [dweight; dbias] (2, D) from (x, dy): the sums over rows of dy * xhat and of dy.
struct GradAffine {
    eps: f64,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "vstar-layer-norm"
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
        let (x, w, b) =
            (f32_slice(s1, l1, "layer norm")?, f32_slice(s2, l2, "layer norm")?, f32_slice(s3, l3, "layer norm")?);
        let d = row_len(l1, w.len())?;
        if b.len() != d {
            candle_core::bail!("layer norm: a bias of {} values for rows of {d}", b.len());
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d * ROWS_PER_TASK).zip(x.par_chunks(d * ROWS_PER_TASK)).for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                let (mean, rstd) = mean_rstd(xr, self.eps);
                for (((o, &v), &g), &s) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = (v - mean) * rstd * g + s;
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    /// Only what is tracked: in LoRA runs the norms' gain and shift are frozen.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dy, eps) = (dy.contiguous()?, self.eps);
        let dx = x.track_op().then(|| x.apply_op3_no_bwd(weight, &dy, &GradInput { eps })).transpose()?;
        if !weight.track_op() && !bias.track_op() {
            return Ok((dx, None, None));
        }
        let both = x.apply_op2_no_bwd(&dy, &GradAffine { eps })?;
        let dw = weight.track_op().then(|| both.get(0)).transpose()?;
        let db = bias.track_op().then(|| both.get(1)).transpose()?;
        Ok((dx, dw, db))
    }
}

impl CustomOp3 for GradInput {
    fn name(&self) -> &'static str {
        "vstar-layer-norm-grad-input"
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
        let (x, w, dy) =
            (f32_slice(s1, l1, "layer norm")?, f32_slice(s2, l2, "layer norm")?, f32_slice(s3, l3, "layer norm")?);
        let d = row_len(l1, w.len())?;
        let mut dx = vec![0f32; x.len()];
        let rows = x.par_chunks(d * ROWS_PER_TASK).zip(dy.par_chunks(d * ROWS_PER_TASK));
        dx.par_chunks_mut(d * ROWS_PER_TASK).zip(rows).for_each(|(dc, (xc, gc))| {
            for ((dr, xr), gr) in dc.chunks_mut(d).zip(xc.chunks(d)).zip(gc.chunks(d)) {
                // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), with g = dy * weight.
                let (mean, rstd) = mean_rstd(xr, self.eps);
                let mg = (lane_sum(d, |i| (gr[i] * w[i]) as f64) / d as f64) as f32;
                let mgx = (lane_sum(d, |i| (gr[i] * w[i] * (xr[i] - mean) * rstd) as f64) / d as f64) as f32;
                for i in 0..d {
                    dr[i] = rstd * (gr[i] * w[i] - mg - (xr[i] - mean) * rstd * mgx);
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

impl CustomOp2 for GradAffine {
    fn name(&self) -> &'static str {
        "vstar-layer-norm-grad-affine"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (f32_slice(s1, l1, "layer norm")?, f32_slice(s2, l2, "layer norm")?);
        let d = l1.dims().last().copied().unwrap_or(0);
        if d == 0 || dy.len() != x.len() {
            candle_core::bail!("layer norm: gradient {:?} does not match the input {:?}", l2.dims(), l1.dims());
        }
        // Per task: its rows' sums (f64), then added in task order.
        let parts: Vec<Vec<f64>> = x
            .par_chunks(d * ROWS_PER_TASK)
            .zip(dy.par_chunks(d * ROWS_PER_TASK))
            .map(|(xc, gc)| {
                let mut sums = vec![0f64; 2 * d];
                for (xr, gr) in xc.chunks(d).zip(gc.chunks(d)) {
                    let (mean, rstd) = mean_rstd(xr, self.eps);
                    for i in 0..d {
                        sums[i] += (gr[i] * (xr[i] - mean) * rstd) as f64;
                        sums[d + i] += gr[i] as f64;
                    }
                }
                sums
            })
            .collect();
        let mut out = vec![0f64; 2 * d];
        for p in parts {
            out.iter_mut().zip(p).for_each(|(o, v)| *o += v);
        }
        Ok((CpuStorage::F32(out.into_iter().map(|v| v as f32).collect()), Shape::from((2, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var};

    /// Values and the tracked sides' gradients equal the composed LayerNorm's, with everything
    /// tracked and with the gain and shift frozen (the input's gradient alone); 70 rows are
    /// several tasks, one of them partial.
    #[test]
    fn matches_the_composed_norm_and_its_gradients() {
        let dev = Device::Cpu;
        let x = Var::randn(0.5f32, 2.0, (2, 35, 12), &dev).unwrap();
        let (w, b) = (Var::randn(1f32, 0.5, 12, &dev).unwrap(), Var::randn(0f32, 0.5, 12, &dev).unwrap());
        for frozen in [false, true] {
            let (wt, bt) = match frozen {
                true => (w.as_tensor().detach(), b.as_tensor().detach()),
                false => (w.as_tensor().clone(), b.as_tensor().clone()),
            };
            let ours = layer_norm(x.as_tensor(), &wt, &bt, 1e-5).unwrap();
            let theirs = composed(x.as_tensor(), &wt, &bt, 1e-5).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-5, "frozen {frozen}: values");
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let e = max_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
            assert!(e < 1e-4, "frozen {frozen}: input gradient differs by {e}");
            if !frozen {
                for v in [&w, &b] {
                    let e = max_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                    assert!(e < 1e-4, "affine gradient differs by {e}");
                }
            }
        }
    }
}
