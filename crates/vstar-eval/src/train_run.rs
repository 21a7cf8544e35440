//! A `vstar train` output folder as evaluation needs it: its placeholder and class, the
//! pretrained Toyland it was trained on (with the judges), the subject's identity centroid from
//! its own training images, and the model with its adapters loaded on demand.

use crate::judges::{centroid, Judges};
use crate::real_metrics::{read_references, RealMetrics};
use candle_core::{Device, Error, Result, Tensor};
use std::path::{Path, PathBuf};
use vstar_diffusion::images;
use vstar_nn::model::Model;
use vstar_toyland::superclass::Superclass;

pub struct TrainRun {
    pub dir: PathBuf,
    pub record: serde_json::Value,
    pub token: String,
    pub class: Superclass,
    pub model_dir: PathBuf,
    pub judges: Judges,
    /// Unit identity centroid of the run's training images.
    pub centroid: Tensor,
}

impl TrainRun {
    /// `model`: the pretrained Toyland to use instead of the run's `base_model`.
    pub fn open(dir: &Path, model: Option<&Path>, dev: &Device) -> Result<Self> {
        let p = dir.join("vstar.json");
        let record = vstar_nn::adapters::run_record(dir)?;
        let field = |k: &str| {
            record[k].as_str().map(String::from).ok_or_else(|| Error::Msg(format!("{}: no `{k}`", p.display())))
        };
        let (token, class_word) = (field("token")?, field("class")?);
        let class =
            Superclass::ALL.iter().copied().find(|s| s.word() == class_word).ok_or_else(|| {
                Error::Msg(format!("{}: class {class_word:?} is not a Toyland superclass", p.display()))
            })?;
        let model_dir = match model {
            Some(m) => m.to_path_buf(),
            None => PathBuf::from(field("base_model")?),
        };
        if !vstar_toyland::pretrain::is_complete(&model_dir) {
            return Err(Error::Msg(format!(
                "{}: not a pretrained Toyland folder with oracles; evaluation judges with Toyland's oracles (pass --model)",
                model_dir.display()
            )));
        }
        let judges = Judges::load(&model_dir, dev)?;
        let refs: Vec<Tensor> = reference_files(&record)
            .iter()
            .map(|f| images::from_rgb(&images::load(f, 32, 32)?, dev))
            .collect::<Result<_>>()?;
        if refs.is_empty() {
            return Err(Error::Msg(format!("{}: lists no training images", p.display())));
        }
        let centroid = centroid(&judges, &Tensor::stack(&refs, 0)?)?;
        Ok(Self { dir: dir.to_path_buf(), record, token, class, model_dir, judges, centroid })
    }

    /// CLIP-T / CLIP-I / DINO against the run's training images with the user's encoders
    /// (None when neither folder is given).
    pub fn real_metrics(&self, clip: Option<&Path>, dino: Option<&Path>, dev: &Device) -> Result<Option<RealMetrics>> {
        let files = reference_files(&self.record);
        let refs = read_references(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
        RealMetrics::load(clip, dino, &refs, dev)
    }

    /// The base model (no adapters).
    pub fn base_model(&self, dev: &Device) -> Result<Model> {
        Model::load(&self.model_dir, dev)
    }

    /// Loads the run's adapter files into `model`; returns each file with what it was.
    pub fn attach(&self, model: &mut Model) -> Result<Vec<(PathBuf, String)>> {
        vstar_nn::adapters::run_files(&self.dir)?
            .into_iter()
            .map(|f| Ok((f.clone(), vstar_nn::adapters::load_adapter(&f, model, 1.0)?)))
            .collect()
    }
}

/// The subject images a run record lists.
fn reference_files(record: &serde_json::Value) -> Vec<PathBuf> {
    record["images"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).map(PathBuf::from).collect()
}
