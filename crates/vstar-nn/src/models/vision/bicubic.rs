//! Bicubic resampling of a position-embedding grid, as torch's
//! `interpolate(mode="bicubic", align_corners=False)` computes it (A = -0.75, no antialias,
//! edge samples repeated): DINOv2 reads images of any size through it.

use candle_core::{Result, Tensor};

const A: f32 = -0.75;

fn near(x: f32) -> f32 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

fn far(x: f32) -> f32 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// (n_out, n_in) row-major: output sample i = sum_j w[i][j] * input sample j.
/// f32 throughout, in torch's order, so the sample positions match its kernel exactly.
fn weights(n_in: usize, n_out: usize) -> Vec<f32> {
    let scale = n_in as f32 / n_out as f32;
    let mut w = vec![0f32; n_out * n_in];
    for i in 0..n_out {
        let real = scale * (i as f32 + 0.5) - 0.5;
        let base = (real.floor() as i64).min(n_in as i64 - 1);
        let t = (real - base as f32).clamp(0.0, 1.0);
        let taps = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, tap) in taps.iter().enumerate() {
            let j = (base - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            w[i * n_in + j] += tap;
        }
    }
    w
}

/// x (h, w, d) -> (out_h, out_w, d), resampled along both grid axes.
pub(super) fn resize(x: &Tensor, (out_h, out_w): (usize, usize)) -> Result<Tensor> {
    let (h, w, d) = x.dims3()?;
    let dev = x.device();
    let wy = Tensor::from_vec(weights(h, out_h), (out_h, h), dev)?;
    let wx = Tensor::from_vec(weights(w, out_w), (out_w, w), dev)?;
    let rows = wy.matmul(&x.reshape((h, w * d))?)?.reshape((out_h, w, d))?;
    let cols = rows.transpose(0, 1)?.contiguous()?.reshape((w, out_h * d))?;
    wx.matmul(&cols)?.reshape((out_w, out_h, d))?.transpose(0, 1)?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_the_identity_and_rows_sum_to_one() {
        for n in [1, 4, 7] {
            let w = weights(n, n);
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(w[i * n + j], if i == j { 1.0 } else { 0.0 });
                }
            }
        }
        for (a, b) in [(4, 5), (4, 6), (16, 37), (37, 16)] {
            let w = weights(a, b);
            for row in w.chunks(a) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
        }
    }
}
