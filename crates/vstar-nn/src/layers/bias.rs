//! Adding a bias along one axis, with a fast backward. candle differentiates a broadcast add by
//! `sum_keepdim` over the broadcast dims, a strided reduction that took ~10% of a Toyland
//! training step; here the bias gradient is one contiguous pass per (outer, channel) run.
//! Two kinds of bias: one per channel (conv and linear biases), and one per item and channel
//! (the UNet's time embedding, (B, C) added to (B, C, H, W)).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::f32_slice as slice;
use super::lanes::lane_sum;

/// The tensor viewed as (outer, channels, inner) around `axis`; kernels walk it in
/// chunks of `channels * inner`.
#[derive(Debug, Clone, Copy)]
struct Runs {
    channels: usize,
    inner: usize,
}

impl Runs {
    fn of(dims: &[usize], axis: usize) -> Runs {
        Runs { channels: dims[axis], inner: dims[axis + 1..].iter().product() }
    }
}

/// x + bias[c] along `axis`; with `per_item`, x + bias[o, c] (one bias row per index of the
/// dims before `axis`).
struct BiasAdd {
    axis: usize,
    per_item: bool,
}

/// The bias gradient: the sum over every dim after `axis`, and over those before it unless
/// `per_item`.
struct ChannelSum {
    axis: usize,
    per_item: bool,
}

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "vstar-bias-add"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (slice(s1, l1, "bias add")?, slice(s2, l2, "bias add")?);
        let r = Runs::of(l1.dims(), self.axis);
        let want = if self.per_item { x.len() / r.inner } else { r.channels };
        if b.len() != want {
            candle_core::bail!("bias add: a bias of {} values where {want} were expected", b.len());
        }
        let mut y = x.to_vec();
        y.par_chunks_mut(r.channels * r.inner).enumerate().for_each(|(o, row)| {
            let b = if self.per_item { &b[o * r.channels..(o + 1) * r.channels] } else { b };
            for (run, &bc) in row.chunks_mut(r.inner).zip(b) {
                run.iter_mut().for_each(|v| *v += bc);
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    /// Only what is tracked: a frozen bias (LoRA, TI) needs no sum.
    fn bwd(&self, x: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let sum = ChannelSum { axis: self.axis, per_item: self.per_item };
        let db = b.track_op().then(|| grad.contiguous()?.apply_op1_no_bwd(&sum)?.reshape(b.shape())).transpose()?;
        Ok((x.track_op().then(|| grad.clone()), db))
    }
}

/// Rows per task when summing a last-axis bias's gradient.
const ROW_BLOCK: usize = 64;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "vstar-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = slice(s, l, "channel sum")?;
        let r = Runs::of(l.dims(), self.axis);
        let per_outer = |row: &[f32]| -> Vec<f64> {
            row.chunks(r.inner).map(|run| lane_sum(run.len(), |i| run[i] as f64)).collect::<Vec<f64>>()
        };
        let add = |mut a: Vec<f64>, b: Vec<f64>| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        };
        let sums: Vec<f64> = if self.per_item {
            g.par_chunks(r.channels * r.inner).flat_map_iter(per_outer).collect()
        } else if r.inner == 1 {
            // A last-axis bias: whole rows added into one accumulator per block of rows.
            let block = |rows: &[f32]| {
                let mut acc = vec![0f64; r.channels];
                for row in rows.chunks(r.channels) {
                    acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
                }
                acc
            };
            g.par_chunks(r.channels * ROW_BLOCK).map(block).reduce(|| vec![0f64; r.channels], add)
        } else {
            g.par_chunks(r.channels * r.inner).map(per_outer).reduce(|| vec![0f64; r.channels], add)
        };
        let n = sums.len();
        Ok((CpuStorage::F32(sums.into_iter().map(|v| v as f32).collect()), Shape::from(n)))
    }
}

/// `x + bias` with `bias` (C,) laid along `axis` of `x`.
pub fn add_bias(x: &Tensor, bias: &Tensor, axis: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&bias.contiguous()?, BiasAdd { axis, per_item: false })
}

/// `x + bias` with `bias` shaped as `x`'s dims up to and including `axis`, e.g. (B, C) added
/// to every (H, W) place of a (B, C, H, W) `x`.
pub fn add_item_bias(x: &Tensor, bias: &Tensor, axis: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&bias.contiguous()?, BiasAdd { axis, per_item: true })
}

/// The sum of `x` over every dim but `axis` (no gradient).
pub fn channel_sum(x: &Tensor, axis: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&ChannelSum { axis, per_item: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var};

    /// Output and both gradients equal candle's broadcast add, for a channel axis in the middle
    /// (conv) and at the end (linear; 300 rows are several blocks of the row-blocked sum).
    #[test]
    fn matches_broadcast_add_and_its_gradients() {
        let dev = Device::Cpu;
        for (shape, axis) in [(vec![3, 4, 5, 2], 1), (vec![2, 3, 4], 2), (vec![4, 6], 0), (vec![3, 100, 8], 2)] {
            let x = Var::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
            let b = Var::randn(0f32, 1.0, shape[axis], &dev).unwrap();
            let mut bshape = vec![1; shape.len()];
            bshape[axis] = shape[axis];
            let ours = add_bias(x.as_tensor(), b.as_tensor(), axis).unwrap();
            let theirs = x.as_tensor().broadcast_add(&b.as_tensor().reshape(bshape).unwrap()).unwrap();
            same_with_gradients(&x, &b, ours, theirs, &format!("{shape:?} axis {axis}"));
        }
    }

    /// The same for a bias per item and channel, (B, C) on (B, C, H, W) and (B, T, C) on
    /// (B, T, C).
    #[test]
    fn item_bias_matches_broadcast_add_and_its_gradients() {
        let dev = Device::Cpu;
        for (shape, axis) in [(vec![3, 4, 5, 2], 1), (vec![2, 3, 4], 2)] {
            let x = Var::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
            let b = Var::randn(0f32, 1.0, &shape[..=axis], &dev).unwrap();
            let mut bshape = shape.clone();
            bshape[axis + 1..].iter_mut().for_each(|d| *d = 1);
            let ours = add_item_bias(x.as_tensor(), b.as_tensor(), axis).unwrap();
            let theirs = x.as_tensor().broadcast_add(&b.as_tensor().reshape(bshape).unwrap()).unwrap();
            same_with_gradients(&x, &b, ours, theirs, &format!("{shape:?} axis {axis} per item"));
        }
    }

    /// Equal outputs and equal gradients for x and the bias under a random probe.
    fn same_with_gradients(x: &Var, b: &Var, ours: Tensor, theirs: Tensor, what: &str) {
        assert!(max_diff(&ours, &theirs) < 1e-6, "{what}");
        let probe = Tensor::randn(0f32, 1.0, ours.shape(), ours.device()).unwrap();
        let go = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [x, b] {
            let e = max_diff(go.get(v.as_tensor()).unwrap(), gt.get(v.as_tensor()).unwrap());
            assert!(e < 1e-4, "{what}: gradient differs by {e}");
        }
    }

    /// A frozen bias (LoRA, TI) gets no gradient; x's is unchanged.
    #[test]
    fn frozen_bias_gets_no_gradient() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1.0, (2, 3, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 3, &dev).unwrap();
        let g = add_bias(x.as_tensor(), &b, 1).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(&b).is_none());
        let want = (x.as_tensor().broadcast_add(&b.reshape((1, 3, 1)).unwrap()).unwrap() * 2.0).unwrap();
        assert!(max_diff(g.get(x.as_tensor()).unwrap(), &want) < 1e-6);
    }
}
