//! Writing and reading a trained component: `config.json` + safetensors (f16 on disk to keep
//! the shipped folder small; loaders read it back as f32), each written atomically.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use std::path::Path;
use vstar_diffusion::images::{write_atomic, write_atomic_with};

/// Writes `dir/config.json` and `dir/<file>` (weights in f16).
pub fn save(dir: &Path, file: &str, config: &serde_json::Value, weights: &HashMap<String, Tensor>) -> Result<()> {
    let half: HashMap<String, Tensor> =
        weights.iter().map(|(k, v)| Ok((k.clone(), v.to_dtype(DType::F16)?))).collect::<Result<_>>()?;
    write_atomic_with(&dir.join(file), |p| candle_core::safetensors::save(&half, p))?;
    let text = serde_json::to_string_pretty(config).expect("json value");
    write_atomic(&dir.join("config.json"), text.as_bytes())
}

/// The weights of `dir/<file>` as f32, if the file exists.
pub fn load(dir: &Path, file: &str, dev: &Device) -> Result<Option<HashMap<String, Tensor>>> {
    let p = dir.join(file);
    if !p.exists() {
        return Ok(None);
    }
    let w = candle_core::safetensors::load(&p, dev)?;
    Ok(Some(w.into_iter().map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?))).collect::<Result<_>>()?))
}

/// A VarBuilder over plain (untracked) tensors: a frozen model for the later stages.
pub fn frozen(weights: &HashMap<String, Tensor>, dev: &Device) -> VarBuilder<'static> {
    VarBuilder::from_tensors(weights.clone(), DType::F32, dev)
}

/// A VarMap's vars sorted by name: a stable order for the optimiser and checkpoints.
pub fn named_vars(vm: &VarMap) -> Vec<(String, candle_core::Var, f64)> {
    let mut v: Vec<_> = vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone(), 1.0)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
