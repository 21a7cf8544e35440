//! The protocol's real-encoder metrics in a comparison, when the user passes `--clip` and/or
//! `--dino` (METHODS.md section 5): DINO and CLIP-I = mean cosine of each generated image to the
//! subject's reference images, CLIP-T = cosine of an image with its prompt, the placeholder
//! replaced by the class word. They sit beside the Toyland oracles' figures, never replace them.

use crate::encoders::{mean_pairwise_cosine, ClipScorer, ImageEncoder};
use candle_core::{Device, Result, Tensor};
use image::RgbImage;
use std::collections::BTreeMap;
use std::path::Path;

pub struct RealMetrics {
    clip: Option<(ClipScorer, Tensor)>,
    dino: Option<(ImageEncoder, Tensor)>,
}

/// The reference images a run was trained on, at their own size (each encoder resizes).
pub fn read_references(files: &[&Path]) -> Result<Vec<RgbImage>> {
    files
        .iter()
        .map(|f| {
            Ok(image::open(f)
                .map_err(|e| candle_core::Error::Msg(format!("{}: cannot read the image ({e})", f.display())))?
                .to_rgb8())
        })
        .collect()
}

impl RealMetrics {
    /// None when neither folder is given. The references' embeddings are computed once.
    pub fn load(
        clip: Option<&Path>,
        dino: Option<&Path>,
        references: &[RgbImage],
        dev: &Device,
    ) -> Result<Option<Self>> {
        if clip.is_none() && dino.is_none() {
            return Ok(None);
        }
        if references.is_empty() {
            candle_core::bail!("--clip / --dino: the run lists no reference images to compare with");
        }
        let clip = clip
            .map(|d| {
                let s = ClipScorer::load(d, dev)?;
                let refs = s.image.embed(references)?;
                Ok::<_, candle_core::Error>((s, refs))
            })
            .transpose()?;
        let dino = dino
            .map(|d| {
                let e = ImageEncoder::load(d, dev)?;
                let refs = e.embed(references)?;
                Ok::<_, candle_core::Error>((e, refs))
            })
            .transpose()?;
        Ok(Some(Self { clip, dino }))
    }

    /// Per-image scores of `images`, all made for `clean_prompt`: "clip_t", "clip_i", "dino"
    /// (whichever encoders were given), each one value per image.
    pub fn score(&self, images: &[RgbImage], clean_prompt: &str) -> Result<Vec<(&'static str, Vec<f64>)>> {
        let per_image = |gen: &Tensor, refs: &Tensor| -> Result<Vec<f64>> {
            (0..gen.dim(0)?).map(|i| mean_pairwise_cosine(&gen.narrow(0, i, 1)?, refs)).collect()
        };
        let mut out = vec![];
        if let Some((clip, refs)) = &self.clip {
            let gen = clip.image.embed(images)?;
            let text = clip.embed_texts(&[clean_prompt])?.broadcast_as(gen.shape())?.contiguous()?;
            out.push(("clip_t", crate::encoders::row_cosines(&gen, &text)?));
            out.push(("clip_i", per_image(&gen, refs)?));
        }
        if let Some((dino, refs)) = &self.dino {
            out.push(("dino", per_image(&dino.embed(images)?, refs)?));
        }
        Ok(out)
    }
}

/// Running per-image scores by metric name.
#[derive(Debug, Default)]
pub struct RealTally(BTreeMap<&'static str, Vec<f64>>);

impl RealTally {
    pub fn add(&mut self, scores: Vec<(&'static str, Vec<f64>)>) {
        for (k, v) in scores {
            self.0.entry(k).or_default().extend(v);
        }
    }

    /// Each metric's mean over every image added.
    pub fn means(&self) -> BTreeMap<String, f64> {
        self.0.iter().map(|(k, v)| (k.to_string(), crate::judges::mean(v))).collect()
    }
}
