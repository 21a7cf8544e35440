//! Atomic, resumable checkpoints: tensors in safetensors plus a JSON record, written to a new
//! folder and published by atomically replacing `latest.json`, so an interrupted write never
//! damages the last good checkpoint.

use candle_core::{Device, Error, Result, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Checkpoint {
    pub step: usize,
    pub tensors: HashMap<String, Tensor>,
    pub meta: serde_json::Value,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Msg(format!("{}: {e}", path.display()))
}

impl Checkpoint {
    /// Saves under `dir/step-N/` and points `dir/latest.json` at it; keeps the previous one
    /// until the new one is published, then removes older step folders.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let name = format!("step-{:08}", self.step);
        let target = dir.join(&name);
        let staging = dir.join(format!(".{name}.partial"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
        candle_core::safetensors::save(&self.tensors, staging.join("tensors.safetensors")).map_err(|e| {
            Error::Msg(format!("{}: cannot write checkpoint ({e}); is the disk full?", staging.display()))
        })?;
        let meta = serde_json::json!({ "step": self.step, "meta": self.meta });
        std::fs::write(staging.join("checkpoint.json"), serde_json::to_vec_pretty(&meta).unwrap())
            .map_err(|e| io(&staging, e))?;
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&staging, &target).map_err(|e| io(&target, e))?;
        vstar_diffusion::images::write_atomic(
            &dir.join("latest.json"),
            serde_json::json!({ "latest": name }).to_string().as_bytes(),
        )?;
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
            let n = entry.file_name().to_string_lossy().to_string();
            if n.starts_with("step-") && n != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(target)
    }

    /// The last published checkpoint in `dir`, if any.
    pub fn load_latest(dir: &Path, dev: &Device) -> Result<Option<Self>> {
        let pointer = dir.join("latest.json");
        if !pointer.exists() {
            return Ok(None);
        }
        let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&pointer).map_err(|e| io(&pointer, e))?)
            .map_err(|e| Error::Msg(format!("{}: {e}", pointer.display())))?;
        let name =
            p["latest"].as_str().ok_or_else(|| Error::Msg(format!("{}: no `latest` entry", pointer.display())))?;
        let folder = dir.join(name);
        let meta_path = folder.join("checkpoint.json");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).map_err(|e| io(&meta_path, e))?)
                .map_err(|e| Error::Msg(format!("{}: {e}", meta_path.display())))?;
        let tensors = candle_core::safetensors::load(folder.join("tensors.safetensors"), dev)?;
        let step = meta["step"].as_u64().unwrap_or(0) as usize;
        Ok(Some(Self { step, tensors, meta: meta["meta"].clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_only_the_latest() {
        let dir = std::env::temp_dir().join(format!("vstar-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for step in [5, 10] {
            let mut tensors = HashMap::new();
            tensors.insert("w".to_string(), Tensor::new(&[step as f32], &Device::Cpu).unwrap());
            Checkpoint { step, tensors, meta: serde_json::json!({"seed": 3}) }.save(&dir).unwrap();
        }
        let c = Checkpoint::load_latest(&dir, &Device::Cpu).unwrap().unwrap();
        assert_eq!(c.step, 10);
        assert_eq!(c.tensors["w"].to_vec1::<f32>().unwrap(), vec![10.0]);
        assert_eq!(c.meta["seed"], 3);
        let steps = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("step-"))
            .count();
        assert_eq!(steps, 1);
    }

    #[test]
    fn an_interrupted_write_leaves_the_last_good_one() {
        let dir = std::env::temp_dir().join(format!("vstar-ckpt-int-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut tensors = HashMap::new();
        tensors.insert("w".to_string(), Tensor::new(&[1f32], &Device::Cpu).unwrap());
        Checkpoint { step: 1, tensors, meta: serde_json::Value::Null }.save(&dir).unwrap();
        // A crash mid-write leaves a partial staging folder and no pointer update.
        std::fs::create_dir_all(dir.join(".step-00000002.partial")).unwrap();
        std::fs::write(dir.join(".step-00000002.partial/tensors.safetensors"), b"half").unwrap();
        let c = Checkpoint::load_latest(&dir, &Device::Cpu).unwrap().unwrap();
        assert_eq!(c.step, 1);
        assert!(Checkpoint::load_latest(&dir.join("none"), &Device::Cpu).unwrap().is_none());
    }
}
