//! The trainable parameter set of each personalization method (METHODS.md section 2), and the
//! files each writes.

pub mod dense;
pub mod lora;
pub mod spectral;
pub mod tokens;

use candle_core::{Result, Var};
use dense::DenseSet;
use lora::{LoraConfig, LoraSet, DEFAULT_TARGETS};
use spectral::SpectralSet;
use std::path::{Path, PathBuf};
use tokens::TokenSet;
use vstar_nn::adapters::dense::DenseFormat;
use vstar_nn::adapters::lora::LoraFormat;
use vstar_nn::model::Model;

pub const METHODS: [&str; 7] = ["lora", "ti", "lora-ti", "dreambooth", "dreambooth-full", "svdiff", "custom"];

/// What a method trains, from its name and the spec's sizes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetSpec {
    pub method: String,
    /// (placeholder, class word) of each subject: one for most runs, several for multi-subject.
    pub subjects: Vec<(String, String)>,
    pub rank: usize,
    /// LoRA alpha (None = the rank: scale 1).
    pub alpha: Option<f64>,
    /// LoRA target suffixes (None = every attention projection).
    pub targets: Option<Vec<String>>,
    /// LoRA on the text encoder too.
    pub text_encoder: bool,
    /// Textual-inversion vectors (ti); lora-ti uses 2 and custom 1, as their papers do.
    pub vectors: usize,
}

impl SetSpec {
    /// Methods that learn a new token embedding (the token must be new to the vocabulary).
    pub fn learns_token(&self) -> bool {
        matches!(self.method.as_str(), "ti" | "lora-ti" | "custom")
    }
}

#[derive(Default)]
pub struct Trainable {
    pub lora: Option<LoraSet>,
    pub tokens: Option<TokenSet>,
    pub dense: Option<DenseSet>,
    pub spectral: Option<SpectralSet>,
}

impl Trainable {
    pub fn attach(model: &mut Model, spec: &SetSpec, seed: u64) -> Result<Self> {
        let lora = |model: &Model, rank: usize| {
            let targets = spec.targets.clone().unwrap_or_else(|| DEFAULT_TARGETS.map(String::from).to_vec());
            let alpha = spec.alpha.unwrap_or(rank as f64);
            LoraSet::attach(model, LoraConfig { rank, alpha, targets, text_encoder: spec.text_encoder }, seed)
        };
        let tokens = |model: &mut Model, n: usize| TokenSet::attach(model, &spec.subjects, n);
        let mut t = Trainable::default();
        match spec.method.as_str() {
            "lora" => t.lora = Some(lora(model, spec.rank)?),
            "ti" => t.tokens = Some(tokens(model, spec.vectors)?),
            "lora-ti" => {
                t.tokens = Some(tokens(model, 2)?);
                t.lora = Some(lora(model, spec.rank)?);
            }
            "dreambooth" => t.dense = Some(DenseSet::attach(model, &DEFAULT_TARGETS, DenseFormat::DreamBooth)?),
            "dreambooth-full" => t.dense = Some(DenseSet::attach(model, &[], DenseFormat::DreamBooth)?),
            "svdiff" => t.spectral = Some(SpectralSet::attach(model)?),
            "custom" => {
                t.tokens = Some(tokens(model, 1)?);
                t.dense = Some(DenseSet::attach(model, &["attn2.to_k", "attn2.to_v"], DenseFormat::CustomDiffusion)?);
            }
            m => candle_core::bail!("--method {m}: valid methods are {}", METHODS.join(", ")),
        }
        Ok(t)
    }

    /// (name, var, lr multiplier) of every trainable tensor, in a stable order.
    pub fn vars(&self) -> Vec<(String, Var, f64)> {
        let mut v = vec![];
        v.extend(self.tokens.iter().flat_map(|s| s.vars()));
        v.extend(self.lora.iter().flat_map(|s| s.vars()));
        v.extend(self.dense.iter().flat_map(|s| s.vars()));
        v.extend(self.spectral.iter().flat_map(|s| s.vars()));
        v
    }

    /// Does the text encoder's output change during training (learned rows or text LoRA)?
    pub fn trains_text(&self) -> bool {
        self.tokens.is_some() || self.lora.as_ref().is_some_and(|l| l.config.text_encoder)
    }

    /// Writes every part's file into `out`; returns them, the main adapter first.
    pub fn save(&self, model: &Model, out: &Path, format: LoraFormat) -> Result<Vec<PathBuf>> {
        let mut files = vec![];
        if let Some(l) = &self.lora {
            let f = lora::adapter_file(out, format);
            l.save(&f, format)?;
            files.push(f);
        }
        if let Some(d) = &self.dense {
            files.push(d.save(model, out)?);
        }
        if let Some(s) = &self.spectral {
            files.push(s.save(out)?);
        }
        if let Some(t) = &self.tokens {
            files.extend(t.save(out)?);
        }
        Ok(files)
    }
}
