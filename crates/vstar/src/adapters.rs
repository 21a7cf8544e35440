//! `--adapter` values: adapter files of any kind vstar reads, or a `vstar train` output folder
//! (every file its vstar.json lists), and the vstar.json fields beside them.

use anyhow::{Context, Result};
use std::path::PathBuf;
use vstar_nn::model::Model;

/// Folders expanded into their files (`--adapter` names).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    vstar_nn::adapters::expand(paths).context("--adapter")
}

/// A string field of the vstar.json beside the first adapter that has one.
pub fn record_field(files: &[PathBuf], key: &str) -> Option<String> {
    files.iter().find_map(|f| vstar_nn::adapters::run_record(f.parent()?).ok()?.get(key)?.as_str().map(String::from))
}

/// Loads every file into the model, saying what each was; warns when a run's other files
/// (e.g. the learned token of lora-ti) were left out.
pub fn load_all(model: &mut Model, files: &[PathBuf]) -> Result<()> {
    for f in files {
        let what = vstar_nn::adapters::load_adapter(f, model, 1.0)?;
        eprintln!("adapter {}: {what}", f.display());
        if let Some(dir) = f.parent().filter(|d| d.join("vstar.json").exists()) {
            for other in vstar_nn::adapters::run_files(dir).unwrap_or_default() {
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
