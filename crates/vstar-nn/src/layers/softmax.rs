//! Softmax over the last dimension with its backward, for training. candle's fused softmax has
//! no backward, and its composed one (exp, sum, divide, with a max subtracted) keeps several
//! (B, H, N, M) tensors alive per attention layer for the backward; this op keeps only its
//! output: dx = p * (dy - sum(dy * p)) over each row.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(SoftmaxLast)
}

struct SoftmaxLast;

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "vstar-softmax-last"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = super::conv::f32_slice(s, l, "softmax")?;
        let m = l.dims().last().copied().unwrap_or(1).max(1);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(m).zip(x.par_chunks(m)).for_each(|(yr, xr)| {
            let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = (v - max).exp();
                sum += *o;
            }
            yr.iter_mut().for_each(|o| *o /= sum);
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, p: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let row = (dy * p)?.sum_keepdim(D::Minus1)?;
        Ok(Some((p * dy.broadcast_sub(&row)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var};

    /// Values and gradient equal candle's composed softmax, on rows with large offsets (the
    /// max subtraction) and a strided input.
    #[test]
    fn matches_candle_softmax_and_its_gradient() {
        let dev = Device::Cpu;
        let v = Var::randn(0f32, 3.0, (2, 3, 7, 5), &dev).unwrap();
        let x = (v.as_tensor() + 40.0).unwrap().transpose(2, 3).unwrap();
        let (ours, theirs) = (softmax_last(&x).unwrap(), candle_nn::ops::softmax(&x, D::Minus1).unwrap());
        assert!(max_diff(&ours, &theirs) < 1e-6);
        let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let e = max_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
        assert!(e < 1e-5, "gradient differs by {e}");
    }
}
