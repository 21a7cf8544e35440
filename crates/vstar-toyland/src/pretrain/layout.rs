//! Where each pretrained component lives: a diffusers StableDiffusionPipeline folder plus
//! `oracles/`.

use crate::vocab::write_tokenizer_files;
use candle_core::Result;
use std::path::{Path, PathBuf};

pub struct Layout {
    pub root: PathBuf,
}

pub const WEIGHTS_DIFFUSERS: &str = "diffusion_pytorch_model.safetensors";
pub const WEIGHTS_TRANSFORMERS: &str = "model.safetensors";

fn err(p: &Path, e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{}: {e}", p.display()))
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).map_err(|e| err(path, e))
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
    }
    pub fn vae(&self) -> PathBuf {
        self.root.join("vae")
    }
    pub fn text_encoder(&self) -> PathBuf {
        self.root.join("text_encoder")
    }
    pub fn unet(&self) -> PathBuf {
        self.root.join("unet")
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer")
    }
    pub fn oracle(&self, name: &str) -> PathBuf {
        self.root.join("oracles").join(name)
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(".checkpoints")
    }
    /// One JSON per trained stage: its steps and training time (kept after the checkpoints go).
    pub fn times(&self) -> PathBuf {
        self.root.join("pretrain_times")
    }

    /// Writes `stage`'s time record (atomically: a second process may be reading the folder).
    pub fn write_time(&self, stage: &str, record: &serde_json::Value) -> Result<()> {
        let dir = self.times();
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        let json = serde_json::to_vec_pretty(record).expect("json");
        vstar_diffusion::images::write_atomic(&dir.join(format!("{stage}.json")), &json)
    }

    /// The training seconds of every stage recorded in `times()`.
    pub fn total_seconds(&self) -> Result<f64> {
        let dir = self.times();
        let mut total = 0.0;
        for e in std::fs::read_dir(&dir).map_err(|e| err(&dir, e))?.flatten() {
            let v: serde_json::Value = vstar_nn::config::read_json(&e.path())?;
            total += v["seconds"].as_f64().unwrap_or(0.0);
        }
        Ok(total)
    }

    pub fn is_complete(&self) -> bool {
        [
            self.unet().join(WEIGHTS_DIFFUSERS),
            self.oracle("eval_clip").join(super::clip_stage::FILE),
            self.oracle("identity").join(WEIGHTS_TRANSFORMERS),
        ]
        .iter()
        .all(|p| p.exists())
    }

    /// model_index.json, the scheduler config and the tokenizer folder.
    pub fn write_static_files(&self) -> Result<()> {
        let sched = self.root.join("scheduler");
        std::fs::create_dir_all(&sched).map_err(|e| err(&sched, e))?;
        write_json(
            &self.root.join("model_index.json"),
            &serde_json::json!({
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.42.1",
                "feature_extractor": [null, null],
                "requires_safety_checker": false,
                "safety_checker": [null, null],
                "scheduler": ["diffusers", "DDIMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"]
            }),
        )?;
        write_json(
            &sched.join("scheduler_config.json"),
            &serde_json::json!({
                "_class_name": "DDIMScheduler",
                "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000, "prediction_type": "epsilon",
                "clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1,
                "timestep_spacing": "leading"
            }),
        )?;
        let tok = self.tokenizer();
        write_tokenizer_files(&tok).map_err(|e| err(&tok, e))?;
        write_json(
            &tok.join("tokenizer_config.json"),
            &serde_json::json!({
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": super::clip_stage::CONTEXT,
                "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"
            }),
        )?;
        Ok(())
    }
}
