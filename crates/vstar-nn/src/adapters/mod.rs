//! Adapter files users exchange, read into `AdaptedLinear` deltas and learned token rows.
//! `load_adapter` tells the kinds apart by their keys.

pub mod dense;
pub mod embeddings;
pub mod lora;
pub mod svdiff;

use crate::model::Model;
use candle_core::{safetensors::MmapedSafetensors, DType, Device, Error, Result, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Writes named tensors as an f32 safetensors file (with optional header metadata),
/// atomically: a temporary file renamed into place, so a failed write leaves no half file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: Option<HashMap<String, String>>,
) -> Result<()> {
    let f32s: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let tmp = path.with_extension("partial");
    safetensors::serialize_to_file(f32s.iter().map(|(k, t)| (k.clone(), t)), meta, &tmp)
        .map_err(|e| Error::Msg(format!("{}: cannot write ({e}); is the disk full?", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Msg(format!("{}: {e}", path.display())))
}

/// What a file turned out to be, for logs and sidecars.
pub fn load_adapter(path: &Path, model: &mut Model, multiplier: f64) -> Result<String> {
    let st = unsafe { MmapedSafetensors::new(path) }
        .map_err(|e| Error::Msg(format!("{}: not a readable safetensors adapter ({e})", path.display())))?;
    let keys: Vec<String> = st.tensors().into_iter().map(|(k, _)| k).collect();
    drop(st);
    if keys.iter().any(|k| k.contains("lora_")) {
        let n = lora::load_lora(path, model, multiplier)?;
        Ok(format!("LoRA, {n} layers"))
    } else if svdiff::is_svdiff_file(&keys) {
        let n = svdiff::load_shifts(path, model, multiplier)?;
        Ok(format!("SVDiff spectral shifts, {n} layers"))
    } else if dense::is_dense_file(&keys) {
        let n = dense::load_dense(path, model, multiplier)?;
        Ok(format!("dense weights, {n} layers"))
    } else if embeddings::is_embedding_file(&keys) {
        let tokens = embeddings::load_embeddings(path, model)?;
        Ok(format!("textual inversion: {}", tokens.join(", ")))
    } else {
        Err(Error::Msg(format!(
            "{}: not an adapter vstar knows (LoRA, textual inversion, SVDiff shifts, DreamBooth or Custom Diffusion \
             weights); its keys start {:?}",
            path.display(),
            keys.iter().take(2).collect::<Vec<_>>()
        )))
    }
}
