//! Where `--model` points: a diffusers-layout folder, a Hugging Face cache repo id found
//! offline, or `toyland` (the shipped default).

use candle_core::{Error, Result};
use std::path::{Path, PathBuf};

/// The shipped Toyland model: `VSTAR_TOYLAND` if set, else `assets/toyland` of the source tree.
pub fn toyland_dir() -> PathBuf {
    match std::env::var_os("VSTAR_TOYLAND") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/toyland"),
    }
}

fn hf_cache_dirs() -> Vec<PathBuf> {
    let mut out = vec![];
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        out.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        out.push(PathBuf::from(p).join("hub"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        out.push(PathBuf::from(home).join(".cache/huggingface/hub"));
    }
    out
}

/// Resolves a `--model` value to a folder holding `model_index.json`.
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    let spec = spec.unwrap_or("toyland");
    if spec == "toyland" {
        let dir = toyland_dir();
        if !dir.join("model_index.json").exists() {
            return Err(Error::Msg(format!(
                "the Toyland model is not at {}: run `vstar toyland pretrain --out {}` or pass --model DIR",
                dir.display(),
                dir.display()
            )));
        }
        return Ok(dir);
    }
    let p = Path::new(spec);
    if p.exists() {
        if !p.join("model_index.json").exists() {
            return Err(Error::Msg(format!(
                "--model {spec}: no model_index.json there; pass the folder of a diffusers-layout pipeline"
            )));
        }
        return Ok(p.to_path_buf());
    }
    if let Some((org, name)) = spec.split_once('/') {
        for cache in hf_cache_dirs() {
            let snaps = cache.join(format!("models--{org}--{name}")).join("snapshots");
            if let Ok(rd) = std::fs::read_dir(&snaps) {
                let mut dirs: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("model_index.json").exists())
                    .collect();
                dirs.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
                if let Some(d) = dirs.pop() {
                    return Ok(d);
                }
            }
        }
    }
    Err(Error::Msg(format!(
        "--model {spec}: no such folder, and not found in the Hugging Face cache (vstar never downloads)"
    )))
}
