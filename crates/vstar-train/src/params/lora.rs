//! The LoRA parameter set: trainable low-rank pairs attached to the UNet's attention
//! projections through `Slots` (dW = alpha/r * B A, A seeded like PEFT's kaiming-uniform
//! spread, B zero so training starts at the base model), and their export.

use candle_core::{DType, Device, Result, Var};
use std::path::Path;
use vstar_diffusion::noise::NoiseSource;
use vstar_nn::adapters::lora::{save_lora, LoraFormat, LoraLayer};
use vstar_nn::layers::{Delta, Slots};
use vstar_nn::model::Model;

/// Attention projections LoRA adapts by default (diffusers' train_dreambooth_lora targets).
pub const DEFAULT_TARGETS: [&str; 8] = [
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
];

/// Text-encoder projections LoRA adapts when the text encoder is trained (diffusers' script).
pub const TEXT_TARGETS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "out_proj"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// UNet layer-name suffixes to adapt.
    pub targets: Vec<String>,
    /// Also adapt the (first) text encoder's attention projections.
    pub text_encoder: bool,
}

pub struct LoraSet {
    pub config: LoraConfig,
    /// (tower: 0 UNet, 1 text encoder; layer name; down (r, in); up (out, r)).
    pub layers: Vec<(usize, String, Var, Var)>,
}

impl LoraSet {
    pub fn attach(model: &Model, config: LoraConfig, seed: u64) -> Result<Self> {
        let text = config.text_encoder.then_some(&model.text[0].encoder.slots);
        Self::attach_to(&model.unet.slots, text, config, seed, &model.device)
    }

    /// On a UNet's (and optionally a text encoder's) adapted layers.
    pub fn attach_to(
        unet: &Slots,
        text_slots: Option<&Slots>,
        config: LoraConfig,
        seed: u64,
        dev: &Device,
    ) -> Result<Self> {
        if config.rank == 0 {
            candle_core::bail!("--rank must be at least 1");
        }
        let mut noise = NoiseSource::new(seed);
        let mut layers = vec![];
        let text: Vec<String> = TEXT_TARGETS.map(String::from).to_vec();
        let mut towers = vec![(0, unet, &config.targets)];
        if let Some(t) = text_slots {
            towers.push((1, t, &text));
        }
        for (tower, slots, targets) in towers {
            for (name, i, o) in slots.names() {
                if !targets.iter().any(|t| name.ends_with(t.as_str())) {
                    continue;
                }
                let r = config.rank.min(i).min(o);
                // kaiming_uniform(a=sqrt(5)) on (r, in) is U(-1/sqrt(in), 1/sqrt(in)): std 1/sqrt(3 in).
                let down = Var::from_tensor(&noise.randn((r, i), dev)?.affine(1.0 / (3.0 * i as f64).sqrt(), 0.0)?)?;
                let up = Var::zeros((o, r), DType::F32, dev)?;
                let delta = Delta::Lora {
                    down: down.as_tensor().clone(),
                    up: up.as_tensor().clone(),
                    scale: config.alpha / r as f64,
                };
                slots.push(&name, delta)?;
                layers.push((tower, name, down, up));
            }
        }
        if !layers.iter().any(|l| l.0 == 0) {
            candle_core::bail!("no UNet layer matches the LoRA targets {:?}", config.targets);
        }
        Ok(Self { config, layers })
    }

    /// (name, var, lr multiplier) for the optimiser and checkpoints.
    pub fn vars(&self) -> Vec<(String, Var, f64)> {
        self.layers
            .iter()
            .flat_map(|(t, n, d, u)| {
                let n = if *t == 0 { n.clone() } else { format!("text_encoder.{n}") };
                [(format!("{n}.down"), d.clone(), 1.0), (format!("{n}.up"), u.clone(), 1.0)]
            })
            .collect()
    }

    pub fn save(&self, path: &Path, format: LoraFormat) -> Result<()> {
        let layers: Vec<LoraLayer> = self
            .layers
            .iter()
            .map(|(t, n, d, u)| LoraLayer {
                tower: *t,
                layer: n.clone(),
                down: d.as_tensor().detach(),
                up: u.as_tensor().detach(),
            })
            .collect();
        save_lora(path, &layers, self.config.alpha, format)
    }
}

/// The LoRA file name of each layout.
pub fn adapter_file(out: &Path, format: LoraFormat) -> std::path::PathBuf {
    match format {
        LoraFormat::Diffusers => out.join("pytorch_lora_weights.safetensors"),
        LoraFormat::Kohya => out.join("lora_kohya.safetensors"),
    }
}
