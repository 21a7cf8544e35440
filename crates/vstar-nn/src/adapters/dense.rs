//! Dense weight files: the trained layers' full weights, loaded as `W_file - W0` deltas (so
//! personalization guidance can still interpolate them per row).
//! - DreamBooth (`dreambooth_weights.safetensors`): UNet keys as diffusers names them,
//!   `<layer>.weight` in the weight's own shape (a conv kernel 4-D, a norm gain 1-D); a
//!   partial state dict (`unet.load_state_dict(.., strict=False)`).
//! - Custom Diffusion (`pytorch_custom_diffusion_weights.safetensors`, diffusers'
//!   `save_attn_procs` layout): `<block>.attn2.processor.to_k_custom_diffusion.weight`.

use crate::layers::Delta;
use crate::model::Model;
use candle_core::{DType, Error, Result, Tensor};
use std::path::Path;

/// The layouts `save_dense` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseFormat {
    DreamBooth,
    CustomDiffusion,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{}: {msg}", path.display()))
}

const CUSTOM: [(&str, &str); 2] =
    [("to_k", ".processor.to_k_custom_diffusion.weight"), ("to_v", ".processor.to_v_custom_diffusion.weight")];

fn key(format: DenseFormat, layer: &str) -> Result<String> {
    match format {
        DenseFormat::DreamBooth => Ok(format!("{layer}.weight")),
        DenseFormat::CustomDiffusion => {
            let (block, proj) = layer.rsplit_once('.').unwrap_or(("", layer));
            CUSTOM
                .iter()
                .find(|(p, _)| *p == proj)
                .map(|(_, suffix)| format!("{block}{suffix}"))
                .ok_or_else(|| Error::Msg(format!("Custom Diffusion trains to_k/to_v only, not `{layer}`")))
        }
    }
}

/// The UNet layer a key names, if it is a dense-weight key.
fn layer_of(key: &str) -> Option<String> {
    for (proj, suffix) in CUSTOM {
        if let Some(block) = key.strip_suffix(suffix) {
            return Some(format!("{block}.{proj}"));
        }
    }
    key.strip_suffix(".weight").map(String::from)
}

/// Is this a dense-weight file (every key a layer's `.weight`)?
pub fn is_dense_file(keys: &[String]) -> bool {
    !keys.is_empty() && keys.iter().all(|k| k.ends_with(".weight"))
}

/// Writes each (UNet layer, full weight in its own shape) as `format`, atomically.
pub fn save_dense(path: &Path, layers: &[(String, Tensor)], format: DenseFormat) -> Result<()> {
    let tensors: Vec<(String, Tensor)> =
        layers.iter().map(|(l, w)| Ok((key(format, l)?, w.clone()))).collect::<Result<_>>()?;
    super::write_safetensors(path, &tensors, None)
}

/// Attaches `multiplier * (W_file - W0)` to every layer of the file; returns the layer count.
pub fn load_dense(path: &Path, model: &Model, multiplier: f64) -> Result<usize> {
    let w = candle_core::safetensors::load(path, &model.device)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    let slots = &model.unet.slots;
    for (k, v) in &w {
        let layer = layer_of(k).ok_or_else(|| bad(path, format!("`{k}` names no UNet layer weight")))?;
        let (base, shape) = slots.weight(&layer).and_then(|w| Ok((w, slots.shape(&layer)?))).map_err(|_| {
            bad(path, format!("`{k}` names no adapted layer of this UNet: was it made for another base model?"))
        })?;
        if v.dims() != shape.as_slice() {
            return Err(bad(
                path,
                format!("`{k}` is {:?}, the layer is {shape:?}: was it made for another base model?", v.dims()),
            ));
        }
        let delta = ((v.to_dtype(DType::F32)?.reshape(base.shape())? - &base)? * multiplier)?;
        slots.push(&layer, Delta::Dense(delta)).map_err(|e| bad(path, e))?;
    }
    Ok(w.len())
}
