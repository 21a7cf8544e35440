//! Small colour helpers shared by the renderer and the samplers.

/// An sRGB colour, 8 bits per channel.
pub type Rgb = [u8; 3];

pub(crate) fn skia(c: Rgb) -> tiny_skia::Color {
    tiny_skia::Color::from_rgba8(c[0], c[1], c[2], 255)
}

pub(crate) fn skia_a(c: Rgb, alpha: f32) -> tiny_skia::Color {
    let mut col = skia(c);
    col.set_alpha(alpha.clamp(0.0, 1.0));
    col
}

/// Linear mix `a*(1-t) + b*t` per channel.
pub(crate) fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    let f = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round().clamp(0.0, 255.0) as u8;
    [f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2])]
}

pub(crate) fn scale(a: Rgb, k: f32) -> Rgb {
    let f = |x: u8| (x as f32 * k).round().clamp(0.0, 255.0) as u8;
    [f(a[0]), f(a[1]), f(a[2])]
}

/// HSV (h in degrees, s and v in 0..1) to RGB.
pub(crate) fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let q = |t: f32| ((t + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    [q(r), q(g), q(b)]
}

/// HSV saturation and value of a colour (used by tests and samplers to keep natural palettes
/// apart from the colour-modifier colours).
pub fn saturation_value(c: Rgb) -> (f32, f32) {
    let mx = c.iter().copied().max().unwrap_or(0) as f32 / 255.0;
    let mn = c.iter().copied().min().unwrap_or(0) as f32 / 255.0;
    let s = if mx > 0.0 { (mx - mn) / mx } else { 0.0 };
    (s, mx)
}

pub(crate) const INK: Rgb = [28, 24, 24];
pub(crate) const WHITE: Rgb = [255, 255, 255];
