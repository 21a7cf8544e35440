//! SVDiff's parameters: one shift per singular value of every adapted UNet weight - linears,
//! conv kernels viewed as (out, in*kh*kw), norm gains as one row (a single shift); the
//! decomposition is done once, here. 1-D weights learn 1000x slower (lr 1e-6 against 1e-3, as
//! the SVDiff reference trains them).

use candle_core::{DType, Result, Var};
use std::path::Path;
use vstar_nn::adapters::svdiff::{save_shifts, spectral_delta};
use vstar_nn::model::Model;

/// The learning-rate multiplier of a 1-D weight's shift.
const ONE_D_LR: f64 = 1e-3;

pub struct SpectralSet {
    /// (UNet layer, shift (k,), lr multiplier).
    pub layers: Vec<(String, Var, f64)>,
}

impl SpectralSet {
    pub fn attach(model: &Model) -> Result<Self> {
        let mut layers = vec![];
        for (name, i, o) in model.unet.slots.names() {
            let shift = Var::zeros(i.min(o), DType::F32, &model.device)?;
            let delta = spectral_delta(model, &name, shift.as_tensor().clone())?;
            model.unet.slots.push(&name, delta)?;
            let lr = if model.unet.slots.shape(&name)?.len() == 1 { ONE_D_LR } else { 1.0 };
            layers.push((name, shift, lr));
        }
        Ok(Self { layers })
    }

    pub fn vars(&self) -> Vec<(String, Var, f64)> {
        self.layers.iter().map(|(n, v, lr)| (format!("{n}.delta"), v.clone(), *lr)).collect()
    }

    pub fn save(&self, out: &Path) -> Result<std::path::PathBuf> {
        let path = out.join("spectral_shifts.safetensors");
        let shifts: Vec<_> = self.layers.iter().map(|(n, v, _)| (n.clone(), v.as_tensor().detach())).collect();
        save_shifts(&path, &shifts)?;
        Ok(path)
    }
}
