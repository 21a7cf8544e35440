//! Image-Alchemy's subject blurs, on an RGB image and a subject mask (white = subject):
//! - Gaussian: the subject region replaced by its Gaussian blur (paper: kernel 151, sigma 100
//!   at 1024 px; sigma scales with the image side);
//! - exponential decay: blend weight 1 inside the mask and `exp(-lambda d)` outside, d the
//!   Euclidean distance to the mask in units of the image side (imageproc's distance
//!   transform), lambda 5 - a soft edge instead of a hard one.

use image::{GrayImage, RgbImage};
use imageproc::distance_transform::euclidean_squared_distance_transform;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Blur {
    Gauss,
    ExpDecay { lambda: f32 },
}

/// The paper's sigma (100 at 1024 px), scaled to `side`.
pub fn sigma_for(side: u32) -> f32 {
    100.0 * side as f32 / 1024.0
}

/// Per-pixel blend weight of the blurred image.
pub fn weights(mask: &GrayImage, blur: Blur) -> Vec<f32> {
    let inside = |v: u8| v >= 128;
    match blur {
        Blur::Gauss => mask.pixels().map(|p| inside(p.0[0]) as u8 as f32).collect(),
        Blur::ExpDecay { lambda } => {
            let fg = GrayImage::from_fn(mask.width(), mask.height(), |x, y| {
                image::Luma([if inside(mask.get_pixel(x, y).0[0]) { 255 } else { 0 }])
            });
            let side = mask.width().max(mask.height()) as f32;
            euclidean_squared_distance_transform(&fg)
                .pixels()
                .map(|d| (-lambda * (d.0[0] as f32).sqrt() / side).exp())
                .collect()
        }
    }
}

/// The image with its subject region blurred (blended by `weights`).
pub fn blur_subject(img: &RgbImage, mask: &GrayImage, blur: Blur) -> RgbImage {
    let blurred = image::imageops::blur(img, sigma_for(img.width().max(img.height())));
    let w = weights(mask, blur);
    let mut out = img.clone();
    for (i, (o, b)) in out.pixels_mut().zip(blurred.pixels()).enumerate() {
        for c in 0..3 {
            o.0[c] = (w[i] * b.0[c] as f32 + (1.0 - w[i]) * o.0[c] as f32).round() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_mask() -> GrayImage {
        GrayImage::from_fn(20, 20, |x, y| {
            image::Luma([if (8..12).contains(&x) && (8..12).contains(&y) { 255 } else { 0 }])
        })
    }

    #[test]
    fn gauss_is_a_hard_mask_and_exp_decay_falls_off_with_distance() {
        let m = square_mask();
        let g = weights(&m, Blur::Gauss);
        assert_eq!((g[9 * 20 + 9], g[0]), (1.0, 0.0));
        let e = weights(&m, Blur::ExpDecay { lambda: 5.0 });
        assert_eq!(e[9 * 20 + 9], 1.0);
        // Two pixels right of the square: d = 2 / 20 of the side.
        assert!((e[9 * 20 + 13] - (-5.0f32 * 2.0 / 20.0).exp()).abs() < 1e-6);
        assert!(e[9 * 20 + 19] < e[9 * 20 + 13]);
    }

    #[test]
    fn only_the_subject_region_changes_under_gauss() {
        let img = RgbImage::from_fn(20, 20, |x, y| {
            image::Rgb([((x * 37 + y * 11) % 256) as u8, (x * 12) as u8, (y * 12) as u8])
        });
        let out = blur_subject(&img, &square_mask(), Blur::Gauss);
        assert_eq!(out.get_pixel(0, 0), img.get_pixel(0, 0));
        assert_ne!(out.get_pixel(9, 9), img.get_pixel(9, 9));
    }
}
