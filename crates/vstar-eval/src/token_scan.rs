//! The rare-token scan (Image-Alchemy): a good placeholder is a token the base model has no
//! fixed look for. For each candidate, render "a photo of TOKEN" from several seeds with the
//! base model and score the set by mean pairwise SSIM: high = the token renders one fixed look
//! (polluted, like "sks" in SD), low = varied images (unseen, a good placeholder).

use crate::ssim::mean_pairwise;
use candle_core::Result;
use image::RgbImage;
use std::collections::BTreeMap;
use vstar_diffusion::guidance::{Cfg, PromptKind};
use vstar_diffusion::{images, pipeline};
use vstar_nn::model::Model;

/// The scan's CFG scale. Strong guidance magnifies the small, accidental difference an
/// untrained embedding makes to the prompt into a fixed look of its own; a look the model
/// learned for the token holds at weak guidance. On Toyland (40 unseen + 3 polluted tokens,
/// 8 images each) the polluted ones rank last at 1.5 and 3 but not at 7.5, where sks alone
/// stands out and unseen tokens score up to 0.485.
pub const GUIDANCE: f64 = 1.5;

/// Iglewicz and Hoaglin's outlier rule: a token is flagged when its modified z-score
/// `0.6745 (s - median) / MAD` among the candidates' scores reaches 3.5. The candidates' own
/// spread sets the bar: a fixed SSIM level does not carry across models, sizes and guidance.
pub const OUTLIER_Z: f64 = 3.5;

/// With fewer candidates the median and MAD say too little: nothing is flagged.
pub const MIN_TO_FLAG: usize = 8;

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenScore {
    pub token: String,
    pub mean_pairwise_ssim: f64,
    /// Modified z-score among the candidates (None below `MIN_TO_FLAG` candidates).
    pub z: Option<f64>,
    pub polluted: bool,
    #[serde(skip)]
    pub images: Vec<RgbImage>,
}

/// The median of `v` (NaN-free), the mean of the middle two for an even count.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Modified z-scores of `v` (None when there are too few values or no spread).
pub fn modified_z(v: &[f64]) -> Option<Vec<f64>> {
    if v.len() < MIN_TO_FLAG {
        return None;
    }
    let m = median(v.to_vec());
    let mad = median(v.iter().map(|x| (x - m).abs()).collect());
    (mad > 0.0).then(|| v.iter().map(|x| 0.6745 * (x - m) / mad).collect())
}

/// Candidates from a vocabulary: whole words of 4-5 letters (the scan the paper describes).
pub fn vocabulary_candidates(model: &Model) -> Vec<String> {
    model.text[0]
        .tokenizer
        .whole_words()
        .into_iter()
        .filter(|w| (4..=5).contains(&w.chars().count()) && w.chars().all(|c| c.is_ascii_lowercase()))
        .collect()
}

/// Scores each token; sorted best placeholder first (lowest SSIM).
pub fn scan(
    model: &Model,
    tokens: &[String],
    seeds: usize,
    steps: usize,
    guidance: f64,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<TokenScore>> {
    if seeds < 2 {
        candle_core::bail!("--seeds must be at least 2 (SSIM compares pairs of images)");
    }
    let cfg = Cfg { scale: guidance };
    let mut out = vec![];
    for (i, t) in tokens.iter().enumerate() {
        let mut by_kind = BTreeMap::new();
        by_kind.insert(PromptKind::Concept, pipeline::encode_prompt(model, &format!("a photo of {t}"))?);
        let (imgs, _) = pipeline::txt2img(model, &cfg, by_kind, seeds, 7, steps)?;
        let rgb = (0..seeds).map(|k| images::to_rgb(&imgs.get(k)?)).collect::<Result<Vec<_>>>()?;
        let s = mean_pairwise(&rgb).map_err(candle_core::Error::Msg)?;
        log(&format!("[{}/{}] {t}: mean pairwise SSIM {s:.3}", i + 1, tokens.len()));
        out.push(TokenScore { token: t.clone(), mean_pairwise_ssim: s, z: None, polluted: false, images: rgb });
    }
    if let Some(z) = modified_z(&out.iter().map(|t| t.mean_pairwise_ssim).collect::<Vec<_>>()) {
        for (t, z) in out.iter_mut().zip(z) {
            (t.z, t.polluted) = (Some(z), z >= OUTLIER_Z);
        }
    }
    out.sort_by(|a, b| a.mean_pairwise_ssim.total_cmp(&b.mean_pairwise_ssim));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// Hand-made scores: median 0.25, MAD 0.01, so z = 0.6745 * (s - 0.25) / 0.01; only the
    /// far outlier reaches 3.5, and too few candidates give no scores at all.
    #[test]
    fn modified_z_flags_only_far_outliers() {
        let v = [0.24, 0.25, 0.26, 0.23, 0.27, 0.25, 0.24, 0.30, 0.40];
        let z = modified_z(&v).unwrap();
        assert!((z[8] - 0.6745 * 15.0).abs() < 1e-6, "{}", z[8]);
        assert!((z[7] - 0.6745 * 5.0).abs() < 1e-6 && z[7] < OUTLIER_Z, "{}", z[7]);
        assert_eq!(z.iter().filter(|&&z| z >= OUTLIER_Z).count(), 1);
        assert!(modified_z(&v[..MIN_TO_FLAG - 1]).is_none());
        assert!(modified_z(&[0.3; 9]).is_none(), "no spread, no scores");
    }
}
