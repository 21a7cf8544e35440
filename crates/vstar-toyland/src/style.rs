//! Style post-processes on the rendered RGB buffer (floats 0..1). Each style changes the look
//! globally with a signature visible at 32 px: sketch = gray edges on white, watercolor =
//! light, soft and blotchy, pixel art = square blocks and few colours, oil = saturated, warm,
//! with stroke ridges.

use crate::context::Style;

pub(crate) type Buf = Vec<[f32; 3]>;

pub(crate) fn apply(style: Style, buf: &mut Buf, size: usize, seed: u64) {
    match style {
        Style::Photo => {}
        Style::Sketch => sketch(buf, size),
        Style::Watercolor => watercolor(buf, size, seed),
        Style::PixelArt => pixel_art(buf, size),
        Style::OilPainting => oil(buf, size, seed),
    }
}

fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn at<T: Copy>(v: &[T], size: usize, x: isize, y: isize) -> T {
    let cx = x.clamp(0, size as isize - 1) as usize;
    let cy = y.clamp(0, size as isize - 1) as usize;
    v[cy * size + cx]
}

fn sobel(l: &[f32], size: usize) -> Vec<f32> {
    let mut out = vec![0.0; size * size];
    for y in 0..size as isize {
        for x in 0..size as isize {
            let g = |dx: isize, dy: isize| at(l, size, x + dx, y + dy);
            let gx = g(1, -1) + 2.0 * g(1, 0) + g(1, 1) - g(-1, -1) - 2.0 * g(-1, 0) - g(-1, 1);
            let gy = g(-1, 1) + 2.0 * g(0, 1) + g(1, 1) - g(-1, -1) - 2.0 * g(0, -1) - g(1, -1);
            out[y as usize * size + x as usize] = (gx * gx + gy * gy).sqrt();
        }
    }
    out
}

/// Integer hash to 0..1, for deterministic textures without an rng.
fn hash(x: i64, y: i64, seed: u64) -> f32 {
    let mut h = seed ^ (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Bilinear value noise in -1..1 with cells of `cell` pixels.
fn value_noise(x: f32, y: f32, cell: f32, seed: u64) -> f32 {
    let (fx, fy) = (x / cell, y / cell);
    let (ix, iy) = (fx.floor() as i64, fy.floor() as i64);
    let (tx, ty) = (fx - ix as f32, fy - iy as f32);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let a = hash(ix, iy, seed) * (1.0 - sx) + hash(ix + 1, iy, seed) * sx;
    let b = hash(ix, iy + 1, seed) * (1.0 - sx) + hash(ix + 1, iy + 1, seed) * sx;
    (a * (1.0 - sy) + b * sy) * 2.0 - 1.0
}

fn sketch(buf: &mut Buf, size: usize) {
    let l: Vec<f32> = buf.iter().map(|&c| luma(c)).collect();
    let e = sobel(&l, size);
    for (i, c) in buf.iter_mut().enumerate() {
        // Light pencil shading keeps dark scenes apart; edges dominate.
        let v = (1.0 - 0.3 * (1.0 - l[i]) - 0.75 * e[i]).clamp(0.0, 1.0);
        *c = [v, v, v];
    }
}

/// Separable tent blur (weights r+1-|k|): softer than a box at 32 px, where a 3x3 box
/// would wash the silhouette out.
fn tent_blur(buf: &Buf, size: usize, r: isize) -> Buf {
    let w: Vec<f32> = (-r..=r).map(|k| (r + 1 - k.abs()) as f32).collect();
    let norm: f32 = w.iter().sum();
    let pass = |src: &Buf, horizontal: bool| -> Buf {
        let mut out = src.clone();
        for y in 0..size as isize {
            for x in 0..size as isize {
                let mut s = [0.0f32; 3];
                for (i, k) in (-r..=r).enumerate() {
                    let c = if horizontal { at(src, size, x + k, y) } else { at(src, size, x, y + k) };
                    s = [s[0] + w[i] * c[0], s[1] + w[i] * c[1], s[2] + w[i] * c[2]];
                }
                out[y as usize * size + x as usize] = s.map(|v| v / norm);
            }
        }
        out
    };
    pass(&pass(buf, true), false)
}

fn watercolor(buf: &mut Buf, size: usize, seed: u64) {
    let blurred = tent_blur(buf, size, (size / 40).max(1) as isize);
    let l: Vec<f32> = blurred.iter().map(|&c| luma(c)).collect();
    let e = sobel(&l, size);
    let paper = [0.99, 0.97, 0.93];
    let cell = size as f32 / 5.0;
    for (i, c) in buf.iter_mut().enumerate() {
        let (x, y) = ((i % size) as f32, (i / size) as f32);
        let blot = 1.0 + 0.14 * value_noise(x, y, cell, seed);
        let grain = 1.0 + 0.03 * (hash(x as i64, y as i64, seed ^ 7) - 0.5);
        let pool = 1.0 - 0.45 * e[i].min(1.0);
        let b = blurred[i];
        *c = std::array::from_fn(|k| {
            let wash = paper[k] * 0.4 + b[k] * 0.6;
            (wash * blot * grain * pool).clamp(0.0, 1.0)
        });
    }
}

fn pixel_art(buf: &mut Buf, size: usize) {
    let b = (size / 16).max(2);
    for by in (0..size).step_by(b) {
        for bx in (0..size).step_by(b) {
            let mut s = [0.0f32; 3];
            let mut n = 0.0;
            for y in by..(by + b).min(size) {
                for x in bx..(bx + b).min(size) {
                    let c = buf[y * size + x];
                    s = [s[0] + c[0], s[1] + c[1], s[2] + c[2]];
                    n += 1.0;
                }
            }
            // Six levels per channel: a small retro palette that still keeps the hues.
            let q = s.map(|v| ((v / n) * 5.0).round() / 5.0);
            for y in by..(by + b).min(size) {
                for x in bx..(bx + b).min(size) {
                    buf[y * size + x] = q;
                }
            }
        }
    }
}

fn oil(buf: &mut Buf, size: usize, seed: u64) {
    let src = buf.clone();
    let cell = (size / 8).max(3);
    let len = (size / 24).max(1) as isize;
    let period = (size as f32 / 14.0).max(2.2);
    for y in 0..size {
        for x in 0..size {
            // One stroke direction per cell: smear along it, ridge across it.
            let ang = hash((x / cell) as i64, (y / cell) as i64, seed) * std::f32::consts::PI;
            let (ca, sa) = (ang.cos(), ang.sin());
            let mut s = [0.0f32; 3];
            for k in -len..=len {
                let sx = x as isize + (k as f32 * ca).round() as isize;
                let sy = y as isize + (k as f32 * sa).round() as isize;
                let c = at(&src, size, sx, sy);
                s = [s[0] + c[0], s[1] + c[1], s[2] + c[2]];
            }
            let n = (2 * len + 1) as f32;
            let c = s.map(|v| v / n);
            let l = luma(c);
            let across = -(x as f32) * sa + y as f32 * ca;
            let ridge = 1.0 + 0.09 * (across * std::f32::consts::TAU / period).sin();
            let warm = [1.04, 0.97, 0.84];
            buf[y * size + x] = std::array::from_fn(|k| {
                let sat = l + (c[k] - l) * 1.45;
                (((sat - 0.5) * 1.12 + 0.5) * ridge * warm[k]).clamp(0.0, 1.0)
            });
        }
    }
}
