//! Sharpening a coarse subject mask with the image's own colours. The class word's
//! cross-attention is known only at the UNet's attention resolution (4x4 on Toyland, 16x16 at
//! most in SD 1.5), so its upsampled mask spills over the background around the subject. The
//! pixels are grouped by colour (k-means); a colour group belongs to the subject when most of
//! its pixels are far denser inside the coarse mask than outside it, and the refined mask keeps
//! the coarse mask's pixels of such groups.

use image::{GrayImage, Luma, RgbImage};

/// Colour groups: enough for a subject of a few colours on a background of a few more.
const GROUPS: usize = 6;
const ITERATIONS: usize = 12;
const ENRICHMENT: f64 = 2.0;

/// k-means on RGB, initialised by farthest points from the first pixel (deterministic).
/// Returns each pixel's group.
fn colour_groups(px: &[[f32; 3]], k: usize) -> Vec<usize> {
    let d2 = |a: &[f32; 3], b: &[f32; 3]| (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f32>();
    let mut centres = vec![px[0]];
    while centres.len() < k.min(px.len()) {
        let far = px
            .iter()
            .max_by(|a, b| {
                let da = centres.iter().map(|c| d2(a, c)).fold(f32::MAX, f32::min);
                let db = centres.iter().map(|c| d2(b, c)).fold(f32::MAX, f32::min);
                da.total_cmp(&db)
            })
            .expect("pixels");
        centres.push(*far);
    }
    let mut group = vec![0; px.len()];
    for _ in 0..ITERATIONS {
        for (g, p) in group.iter_mut().zip(px) {
            *g = (0..centres.len()).min_by(|&i, &j| d2(p, &centres[i]).total_cmp(&d2(p, &centres[j]))).expect("k");
        }
        let mut sums = vec![([0f32; 3], 0usize); centres.len()];
        for (&g, p) in group.iter().zip(px) {
            (0..3).for_each(|c| sums[g].0[c] += p[c]);
            sums[g].1 += 1;
        }
        for (c, (s, n)) in centres.iter_mut().zip(sums) {
            if n > 0 {
                *c = s.map(|v| v / n as f32);
            }
        }
    }
    group
}

/// The coarse mask (white = subject) narrowed to the colour groups concentrated inside it.
/// An empty result gives the coarse mask back: colours could not tell the subject apart.
pub fn refine(image: &RgbImage, coarse: &GrayImage) -> GrayImage {
    assert_eq!(image.dimensions(), coarse.dimensions(), "refine: image and mask differ in size");
    let px: Vec<[f32; 3]> = image.pixels().map(|p| p.0.map(|v| v as f32)).collect();
    let inside: Vec<bool> = coarse.pixels().map(|p| p.0[0] >= 128).collect();
    let group = colour_groups(&px, GROUPS);
    let mut counts = vec![(0usize, 0usize); GROUPS]; // (inside, all)
    for (&g, &i) in group.iter().zip(&inside) {
        counts[g].0 += i as usize;
        counts[g].1 += 1;
    }
    // A group is the subject's when its pixels are at least ENRICHMENT times as dense inside
    // the mask as outside it; a background colour the mask merely overlaps is about as dense
    // on both sides, however large the mask.
    let area_in = inside.iter().filter(|&&i| i).count().max(1) as f64;
    let area_out = (inside.len() as f64 - area_in).max(1.0);
    let subject: Vec<bool> =
        counts.iter().map(|&(i, n)| n > 0 && i as f64 / area_in >= ENRICHMENT * (n - i) as f64 / area_out).collect();
    let keep: Vec<bool> = group.iter().zip(&inside).map(|(&g, &i)| i && subject[g]).collect();
    if !keep.iter().any(|&k| k) {
        return coarse.clone();
    }
    let (w, h) = coarse.dimensions();
    GrayImage::from_fn(w, h, |x, y| Luma([if keep[(y * w + x) as usize] { 255 } else { 0 }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A red square (the subject) on a two-tone background; the coarse mask is a larger
    /// square around it that also covers some of both background tones. The refined mask is
    /// exactly the red square.
    #[test]
    fn keeps_the_subject_colours_inside_the_coarse_mask() {
        let image = RgbImage::from_fn(16, 16, |x, y| {
            if (6..10).contains(&x) && (6..10).contains(&y) {
                Rgb([220, 30, 30])
            } else if y < 8 {
                Rgb([40, 90, 200])
            } else {
                Rgb([30, 160, 60])
            }
        });
        let coarse = GrayImage::from_fn(16, 16, |x, y| {
            Luma([if (4..12).contains(&x) && (4..12).contains(&y) { 255 } else { 0 }])
        });
        let refined = refine(&image, &coarse);
        for (x, y, p) in refined.enumerate_pixels() {
            let subject = (6..10).contains(&x) && (6..10).contains(&y);
            assert_eq!(p.0[0] == 255, subject, "pixel ({x}, {y})");
        }
    }

    /// When no colour group is concentrated inside the mask, the coarse mask comes back.
    #[test]
    fn falls_back_to_the_coarse_mask() {
        let image = RgbImage::from_fn(8, 8, |x, _| if x < 4 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) });
        let coarse = GrayImage::from_fn(8, 8, |x, y| Luma([if x == 0 && y == 0 { 255 } else { 0 }]));
        assert_eq!(refine(&image, &coarse), coarse);
    }
}
