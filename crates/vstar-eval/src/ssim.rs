//! SSIM (Wang et al. 2004) as scikit-image computes it with `gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=255`: 11x11 Gaussian window (truncate 3.5),
//! reflect-padded filtering, the mean taken away from a 5-pixel border, channels averaged.
//! Used by the rare-token scan (mean pairwise SSIM of a token's images).

use image::RgbImage;

const SIGMA: f64 = 1.5;
const RADIUS: usize = 5; // int(3.5 * 1.5 + 0.5)

fn kernel() -> [f64; 2 * RADIUS + 1] {
    let mut k = [0f64; 2 * RADIUS + 1];
    for (i, v) in k.iter_mut().enumerate() {
        let x = i as f64 - RADIUS as f64;
        *v = (-x * x / (2.0 * SIGMA * SIGMA)).exp();
    }
    let s: f64 = k.iter().sum();
    k.map(|v| v / s)
}

/// scipy's 'reflect' mode: (d c b a | a b c d | d c b a).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

/// The Gaussian filter along one axis of an (h, w) plane (rows or columns).
fn blur_axis(p: &[f64], h: usize, w: usize, along_rows: bool) -> Vec<f64> {
    let k = kernel();
    let (n, step) = if along_rows { (w, 1) } else { (h, w) };
    let mut out = vec![0f64; h * w];
    for y in 0..h {
        for x in 0..w {
            let (pos, base) = if along_rows { (x, y * w) } else { (y, x) };
            out[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * p[base + reflect(pos as isize + j as isize - RADIUS as isize, n) * step])
                .sum();
        }
    }
    out
}

/// Separable Gaussian filter of an (h, w) plane.
fn blur(p: &[f64], h: usize, w: usize) -> Vec<f64> {
    blur_axis(&blur_axis(p, h, w, true), h, w, false)
}

/// SSIM of two planes (values 0..255).
fn plane_ssim(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<f64>>();
    let (ma, mb) = (blur(a, h, w), blur(b, h, w));
    let (maa, mbb, mab) = (blur(&prod(a, a), h, w), blur(&prod(b, b), h, w), blur(&prod(a, b), h, w));
    let (mut sum, mut n) = (0f64, 0usize);
    for y in RADIUS..h.saturating_sub(RADIUS) {
        for x in RADIUS..w.saturating_sub(RADIUS) {
            let i = y * w + x;
            let (va, vb, cov) = (maa[i] - ma[i] * ma[i], mbb[i] - mb[i] * mb[i], mab[i] - ma[i] * mb[i]);
            sum += ((2.0 * ma[i] * mb[i] + c1) * (2.0 * cov + c2))
                / ((ma[i] * ma[i] + mb[i] * mb[i] + c1) * (va + vb + c2));
            n += 1;
        }
    }
    sum / n as f64
}

/// Mean SSIM over the RGB channels. Images must have the same size, at least 11x11.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Result<f64, String> {
    let (w, h) = a.dimensions();
    if b.dimensions() != (w, h) {
        return Err(format!("ssim: images differ in size ({w}x{h} vs {:?})", b.dimensions()));
    }
    if (w as usize) < 2 * RADIUS + 1 || (h as usize) < 2 * RADIUS + 1 {
        return Err(format!("ssim: images of {w}x{h} are smaller than the 11x11 window"));
    }
    let plane = |img: &RgbImage, c: usize| img.pixels().map(|p| p.0[c] as f64).collect::<Vec<f64>>();
    let (h, w) = (h as usize, w as usize);
    Ok((0..3).map(|c| plane_ssim(&plane(a, c), &plane(b, c), h, w)).sum::<f64>() / 3.0)
}

/// Mean SSIM over all unordered pairs: high when a set of images looks alike.
pub fn mean_pairwise(images: &[RgbImage]) -> Result<f64, String> {
    if images.len() < 2 {
        return Err("mean pairwise SSIM needs at least two images".into());
    }
    let mut pairs = vec![];
    for i in 0..images.len() {
        for j in i + 1..images.len() {
            pairs.push(ssim(&images[i], &images[j])?);
        }
    }
    Ok(pairs.iter().sum::<f64>() / pairs.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_scipy() {
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
    }

    #[test]
    fn identical_images_score_one_and_refuses_small_ones() {
        let a = RgbImage::from_fn(16, 12, |x, y| image::Rgb([(x * 13) as u8, (y * 7) as u8, 90]));
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        assert!(ssim(&RgbImage::new(8, 8), &RgbImage::new(8, 8)).unwrap_err().contains("smaller"));
    }
}
