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

/// Mean pairwise SSIM above which a token counts as bound to a fixed look.
pub const POLLUTED_SSIM: f64 = 0.5;

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenScore {
    pub token: String,
    pub mean_pairwise_ssim: f64,
    pub polluted: bool,
    #[serde(skip)]
    pub images: Vec<RgbImage>,
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
    log: &mut dyn FnMut(&str),
) -> Result<Vec<TokenScore>> {
    if seeds < 2 {
        candle_core::bail!("--seeds must be at least 2 (SSIM compares pairs of images)");
    }
    let cfg = Cfg { scale: 7.5 };
    let mut out = vec![];
    for (i, t) in tokens.iter().enumerate() {
        let mut by_kind = BTreeMap::new();
        by_kind.insert(PromptKind::Concept, pipeline::encode_prompt(model, &format!("a photo of {t}"))?);
        let (imgs, _) = pipeline::txt2img(model, &cfg, by_kind, seeds, 7, steps)?;
        let rgb = (0..seeds).map(|k| images::to_rgb(&imgs.get(k)?)).collect::<Result<Vec<_>>>()?;
        let s = mean_pairwise(&rgb).map_err(candle_core::Error::Msg)?;
        log(&format!("[{}/{}] {t}: mean pairwise SSIM {s:.3}", i + 1, tokens.len()));
        out.push(TokenScore { token: t.clone(), mean_pairwise_ssim: s, polluted: s > POLLUTED_SSIM, images: rgb });
    }
    out.sort_by(|a, b| a.mean_pairwise_ssim.total_cmp(&b.mean_pairwise_ssim));
    Ok(out)
}
