//! Dense deltas on chosen UNet layers: DreamBooth (attention projections, or the whole UNet:
//! every linear, conv kernel and norm gain) and Custom Diffusion (cross-attention K and V).
//! The trainable tensor is dW, zero at the start; the file stores W0 + dW, in the weight's own
//! shape, as the tools users exchange expect.

use candle_core::{DType, Result, Var};
use std::path::Path;
use vstar_nn::adapters::dense::{save_dense, DenseFormat};
use vstar_nn::layers::Delta;
use vstar_nn::model::Model;

pub struct DenseSet {
    pub format: DenseFormat,
    /// (UNet layer, dW as the layer's matrix (out, in)).
    pub layers: Vec<(String, Var)>,
}

impl DenseSet {
    /// `targets`: layer-name suffixes; an empty list means every adapted layer.
    pub fn attach(model: &Model, targets: &[&str], format: DenseFormat) -> Result<Self> {
        let mut layers = vec![];
        for (name, i, o) in model.unet.slots.names() {
            if !targets.is_empty() && !targets.iter().any(|t| name.ends_with(t)) {
                continue;
            }
            let dw = Var::zeros((o, i), DType::F32, &model.device)?;
            model.unet.slots.push(&name, Delta::Dense(dw.as_tensor().clone()))?;
            layers.push((name, dw));
        }
        if layers.is_empty() {
            candle_core::bail!("no UNet layer matches {targets:?}");
        }
        Ok(Self { format, layers })
    }

    pub fn vars(&self) -> Vec<(String, Var, f64)> {
        self.layers.iter().map(|(n, v)| (format!("{n}.delta"), v.clone(), 1.0)).collect()
    }

    pub fn file_name(&self) -> &'static str {
        match self.format {
            DenseFormat::DreamBooth => "dreambooth_weights.safetensors",
            DenseFormat::CustomDiffusion => "pytorch_custom_diffusion_weights.safetensors",
        }
    }

    pub fn save(&self, model: &Model, out: &Path) -> Result<std::path::PathBuf> {
        let full = self
            .layers
            .iter()
            .map(|(n, dw)| {
                let slots = &model.unet.slots;
                Ok((n.clone(), (slots.weight(n)? + dw.as_tensor().detach())?.reshape(slots.shape(n)?)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let path = out.join(self.file_name());
        save_dense(&path, &full, self.format)?;
        Ok(path)
    }
}
