//! transformers' SamProcessor (PIL backend) in Rust: the image resized so its longest side is
//! `longest_edge` with PIL's bilinear filter (reproduced here to the bit: separable fixed-point
//! passes, horizontal then vertical, each rounded to 8 bits), rescaled, normalised and zero-padded
//! bottom / right; prompt coordinates scaled to the resized image; and `post_process_masks`:
//! low-res logits bilinearly upscaled to the padded input, cropped to the resized image and
//! resampled to the original size.

use super::config::SamProcessorConfig;
use candle_core::{Device, Result, Tensor};
use image::RgbImage;

/// PIL's fixed-point precision for 8-bit resampling (Resample.c).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// An image ready for the model, with the sizes post-processing needs.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// (1, 3, H, W): the padded, normalised pixels.
    pub pixels: Tensor,
    /// (height, width) of the image as given.
    pub original: (usize, usize),
    /// (height, width) after resizing, before padding.
    pub reshaped: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct SamProcessor {
    pub config: SamProcessorConfig,
}

/// transformers' `_get_preprocess_shape`: (height, width) with the longest side `longest`.
pub fn preprocess_shape((h, w): (usize, usize), longest: usize) -> (usize, usize) {
    let scale = longest as f64 / h.max(w) as f64;
    ((h as f64 * scale + 0.5) as usize, (w as f64 * scale + 0.5) as usize)
}

/// One output pixel's taps: first input index and fixed-point weights.
struct Taps {
    start: usize,
    weights: Vec<i64>,
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter.
fn coefficients(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle filter's support is 1
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = w.iter().sum();
            let one = (1i64 << PRECISION_BITS) as f64;
            let weights = w
                .iter()
                .map(|&v| {
                    let v = if total != 0.0 { v / total } else { v };
                    if v < 0.0 {
                        (-0.5 + v * one) as i64
                    } else {
                        (0.5 + v * one) as i64
                    }
                })
                .collect();
            Taps { start: xmin as usize, weights }
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// `img.resize((w, h), Image.BILINEAR)` of Pillow for an RGB image, bit for bit.
pub fn pil_bilinear(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let mut cur = img.clone();
    if w != iw {
        let taps = coefficients(iw as usize, w as usize);
        let mut out = RgbImage::new(w, ih);
        for y in 0..ih {
            for (x, t) in taps.iter().enumerate() {
                let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, k) in t.weights.iter().enumerate() {
                    let p = cur.get_pixel((t.start + i) as u32, y).0;
                    for c in 0..3 {
                        acc[c] += p[c] as i64 * k;
                    }
                }
                out.put_pixel(x as u32, y, image::Rgb(acc.map(clip8)));
            }
        }
        cur = out;
    }
    if h != ih {
        let taps = coefficients(ih as usize, h as usize);
        let mut out = RgbImage::new(w, h);
        for (y, t) in taps.iter().enumerate() {
            for x in 0..w {
                let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, k) in t.weights.iter().enumerate() {
                    let p = cur.get_pixel(x, (t.start + i) as u32).0;
                    for c in 0..3 {
                        acc[c] += p[c] as i64 * k;
                    }
                }
                out.put_pixel(x, y as u32, image::Rgb(acc.map(clip8)));
            }
        }
        cur = out;
    }
    cur
}

impl SamProcessor {
    pub fn new(config: SamProcessorConfig) -> Self {
        Self { config }
    }

    /// Resize, rescale, normalise (in f32, as transformers' numpy code), pad.
    pub fn preprocess(&self, img: &RgbImage, dev: &Device) -> Result<Preprocessed> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(candle_core::Error::Msg("SAM: the image is empty (0 pixels)".into()));
        }
        let original = (h as usize, w as usize);
        let reshaped = preprocess_shape(original, self.config.longest_edge);
        let (rh, rw) = (reshaped.0.max(1), reshaped.1.max(1));
        let reshaped = (rh, rw);
        let resized = pil_bilinear(img, rw as u32, rh as u32);
        let (ph, pw) = self.config.pad;
        let mut data = vec![0f32; 3 * ph * pw];
        for (x, y, p) in resized.enumerate_pixels() {
            for c in 0..3 {
                let mut v = match self.config.rescale_factor {
                    Some(s) => (p.0[c] as f64 * s) as f32,
                    None => p.0[c] as f32,
                };
                if let Some((mean, std)) = &self.config.mean_std {
                    v = (v - mean[c] as f32) / std[c] as f32;
                }
                data[c * ph * pw + y as usize * pw + x as usize] = v;
            }
        }
        let pixels = Tensor::from_vec(data, (1, 3, ph, pw), dev)?;
        Ok(Preprocessed { pixels, original, reshaped })
    }

    /// Image-pixel (x, y) -> coordinates in the resized image (SamProcessor's
    /// `_normalize_coordinates`, in f64).
    pub fn scale_point(&self, original: (usize, usize), (x, y): (f64, f64)) -> (f64, f64) {
        let (old_h, old_w) = original;
        let (new_h, new_w) = preprocess_shape(original, self.config.longest_edge);
        (x * (new_w as f64 / old_w as f64), y * (new_h as f64 / old_h as f64))
    }

    /// `post_process_masks(binarize=False)`: low-res logits (1, K, h, w) -> (K, H, W) logits at
    /// the original image size.
    pub fn post_process(&self, low_res: &Tensor, p: &Preprocessed) -> Result<Tensor> {
        let (ph, pw) = self.config.pad;
        let (rh, rw) = p.reshaped;
        let (oh, ow) = p.original;
        let up = low_res.upsample_bilinear2d(ph, pw, false)?;
        let cropped = up.narrow(2, 0, rh.min(ph))?.narrow(3, 0, rw.min(pw))?.contiguous()?;
        cropped.upsample_bilinear2d(oh, ow, false)?.squeeze(0)
    }
}
