//! `--adapter` values: adapter files of any kind vstar reads, or a `vstar train` output folder
//! (every file its vstar.json lists), and the vstar.json fields beside them.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use vstar_nn::model::Model;

fn record(dir: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("vstar.json")).ok()?).ok()
}

/// The files listed in a run folder's vstar.json (the A1111 copy of an embedding skipped: the
/// diffusers file holds the same rows).
fn run_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rec = record(dir).with_context(|| {
        format!("--adapter {}: a folder must be a `vstar train` output with its vstar.json", dir.display())
    })?;
    let files: Vec<PathBuf> = rec["files"]
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
        anyhow::bail!("--adapter {}: its vstar.json lists no adapter files", dir.display());
    }
    Ok(files)
}

/// Folders expanded into their files.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
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

/// A string field of the vstar.json beside the first adapter that has one.
pub fn record_field(files: &[PathBuf], key: &str) -> Option<String> {
    files.iter().find_map(|f| record(f.parent()?)?.get(key)?.as_str().map(String::from))
}

/// Loads every file into the model, saying what each was; warns when a run's other files
/// (e.g. the learned token of lora-ti) were left out.
pub fn load_all(model: &mut Model, files: &[PathBuf]) -> Result<()> {
    for f in files {
        let what = vstar_nn::adapters::load_adapter(f, model, 1.0)?;
        eprintln!("adapter {}: {what}", f.display());
        if let Some(dir) = f.parent().filter(|d| d.join("vstar.json").exists()) {
            for other in run_files(dir).unwrap_or_default() {
                if !files.contains(&other) {
                    eprintln!(
                        "warning: {} belongs to the same run but was not given; pass the folder {} to load all",
                        other.display(),
                        dir.display()
                    );
                }
            }
        }
    }
    Ok(())
}
