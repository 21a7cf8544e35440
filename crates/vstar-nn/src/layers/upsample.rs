//! Nearest-neighbour upsampling as one op whose backward sums each source pixel's copies.
//! candle's backward is a grouped conv with a ones kernel, one small product per channel:
//! 1.5% of a Toyland LoRA step for what is one pass over the gradient.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::f32_slice;

/// `x` (B, C, H, W) upsampled to (B, C, th, tw) by nearest neighbour, as candle's
/// `upsample_nearest2d` does it (source index floor(i * H / th)).
pub fn upsample_nearest(x: &Tensor, th: usize, tw: usize) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() || x.rank() != 4 {
        return x.upsample_nearest2d(th, tw);
    }
    x.contiguous()?.apply_op1(Upsample { th, tw })
}

struct Upsample {
    th: usize,
    tw: usize,
}

/// Which source index each of `to` outputs reads, for a side of `from` (candle's rounding).
fn sources(from: usize, to: usize) -> Vec<usize> {
    let scale = from as f64 / to as f64;
    (0..to).map(|i| ((i as f64 * scale) as usize).min(from - 1)).collect()
}

/// The per-plane index maps of an upsampling from (h, w) to (th, tw).
struct Maps {
    rows: Vec<usize>,
    cols: Vec<usize>,
}

impl Maps {
    fn new((h, w): (usize, usize), (th, tw): (usize, usize)) -> Self {
        Self { rows: sources(h, th), cols: sources(w, tw) }
    }
}

impl CustomOp1 for Upsample {
    fn name(&self) -> &'static str {
        "vstar-upsample-nearest"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, "upsample input")?;
        let maps = Maps::new((h, w), (self.th, self.tw));
        let mut y = vec![0f32; b * c * self.th * self.tw];
        y.par_chunks_mut(self.th * self.tw).zip(x.par_chunks(h * w)).for_each(|(dst, src)| {
            for (row, &sy) in dst.chunks_mut(self.tw).zip(&maps.rows) {
                let from = &src[sy * w..(sy + 1) * w];
                row.iter_mut().zip(&maps.cols).for_each(|(v, &sx)| *v = from[sx]);
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, c, self.th, self.tw))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Fold { h, w })?))
    }
}

/// The adjoint of `Upsample`: each (h, w) source pixel gets the sum of its copies' gradients.
struct Fold {
    h: usize,
    w: usize,
}

impl CustomOp1 for Fold {
    fn name(&self) -> &'static str {
        "vstar-upsample-nearest-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, th, tw) = l.shape().dims4()?;
        let grad = f32_slice(s, l, "upsample gradient")?;
        let maps = Maps::new((self.h, self.w), (th, tw));
        let mut gx = vec![0f32; b * c * self.h * self.w];
        gx.par_chunks_mut(self.h * self.w).zip(grad.par_chunks(th * tw)).for_each(|(dst, src)| {
            for (row, &sy) in src.chunks(tw).zip(&maps.rows) {
                let to = &mut dst[sy * self.w..(sy + 1) * self.w];
                row.iter().zip(&maps.cols).for_each(|(v, &sx)| to[sx] += v);
            }
        });
        Ok((CpuStorage::F32(gx), Shape::from((b, c, self.h, self.w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var};

    /// Values equal candle's at integer and uneven factors; the gradient equals candle's where
    /// candle has one (one integer factor both ways) and is the forward's adjoint everywhere:
    /// <up(x), p> = <x, up^T(p)> for any probe p.
    #[test]
    fn matches_candle_and_its_gradient_is_the_adjoint() {
        let dev = Device::Cpu;
        for ((h, w), (th, tw)) in [((3, 4), (6, 8)), ((2, 2), (6, 4)), ((3, 5), (4, 7)), ((4, 4), (4, 4))] {
            let x = Var::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap();
            let ours = upsample_nearest(x.as_tensor(), th, tw).unwrap();
            let reference = x.as_tensor().upsample_nearest2d(th, tw).unwrap();
            assert_eq!(max_diff(&ours, &reference), 0.0, "{h}x{w} -> {th}x{tw}");
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let grads = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = grads.get(x.as_tensor()).unwrap();
            let lhs = (ours * &probe).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            let rhs = (x.as_tensor() * gx).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{h}x{w} -> {th}x{tw}: {lhs} vs {rhs}");
            if th % h == 0 && tw % w == 0 && th / h == tw / w {
                let theirs = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                assert!(max_diff(gx, theirs.get(x.as_tensor()).unwrap()) < 1e-5, "{h}x{w} -> {th}x{tw}");
            }
        }
    }
}
