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

/// The vstar.json record of a `vstar train` output folder.
pub fn run_record(dir: &Path) -> Result<serde_json::Value> {
    let rec = dir.join("vstar.json");
    let text = std::fs::read_to_string(&rec)
        .map_err(|e| Error::Msg(format!("{}: cannot read ({e}); give a `vstar train` output folder", rec.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Msg(format!("{}: {e}", rec.display())))
}

/// The adapter files of a `vstar train` output folder, as its vstar.json lists them (the A1111
/// copy of an embedding skipped: the diffusers file holds the same rows).
pub fn run_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let rec = dir.join("vstar.json");
    let v = run_record(dir)?;
    let files: Vec<std::path::PathBuf> = v["files"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str())
                .filter(|f| !f.ends_with(".a1111.safetensors"))
                .map(|f| dir.join(f))
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        return Err(Error::Msg(format!("{}: lists no adapter files", rec.display())));
    }
    Ok(files)
}

/// Folders expanded into their run files; files kept as they are.
pub fn expand(paths: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>> {
    let mut out = vec![];
    for p in paths {
        if p.is_dir() {
            out.extend(run_files(p)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
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
