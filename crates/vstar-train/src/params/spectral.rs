//! SVDiff's parameters: one shift per singular value of every adapted UNet weight matrix
//! (attention, feed-forward and projection linears; the decomposition is done once, here).

use candle_core::{DType, Result, Var};
use std::path::Path;
use vstar_nn::adapters::svdiff::{save_shifts, spectral_delta};
use vstar_nn::model::Model;

pub struct SpectralSet {
    /// (UNet layer, shift (k,)).
    pub layers: Vec<(String, Var)>,
}

impl SpectralSet {
    pub fn attach(model: &Model) -> Result<Self> {
        let mut layers = vec![];
        for (name, i, o) in model.unet.slots.names() {
            let shift = Var::zeros(i.min(o), DType::F32, &model.device)?;
            let delta = spectral_delta(model, &name, shift.as_tensor().clone())?;
            model.unet.slots.push(&name, delta)?;
            layers.push((name, shift));
        }
        Ok(Self { layers })
    }

    pub fn vars(&self) -> Vec<(String, Var, f64)> {
        self.layers.iter().map(|(n, v)| (format!("{n}.delta"), v.clone(), 1.0)).collect()
    }

    pub fn save(&self, out: &Path) -> Result<std::path::PathBuf> {
        let path = out.join("spectral_shifts.safetensors");
        let shifts: Vec<_> = self.layers.iter().map(|(n, v)| (n.clone(), v.as_tensor().detach())).collect();
        save_shifts(&path, &shifts)?;
        Ok(path)
    }
}
