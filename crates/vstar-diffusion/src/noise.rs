//! Seeded Gaussian noise: the same seed gives the same initial latents for every method, so
//! outputs compare image to image. Also the loader for `--init-noise` files.

use candle_core::{Device, Error, Result, Shape, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

/// A stream of standard normal draws from one seed.
pub struct NoiseSource {
    rng: ChaCha8Rng,
}

impl NoiseSource {
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn randn<S: Into<Shape>>(&mut self, shape: S, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count()).map(|_| StandardNormal.sample(&mut self.rng)).collect();
        Tensor::from_vec(v, shape, dev)
    }
}

/// Reads tensor "noise" from a safetensors file and checks it has the latent shape.
pub fn load_init_noise(path: &Path, expected: &[usize], dev: &Device) -> Result<Tensor> {
    let tensors = candle_core::safetensors::load(path, dev)
        .map_err(|e| Error::Msg(format!("--init-noise {}: cannot read ({e})", path.display())))?;
    let t = tensors
        .get("noise")
        .ok_or_else(|| Error::Msg(format!("--init-noise {}: no tensor named \"noise\"", path.display())))?;
    if t.dims() != expected {
        return Err(Error::Msg(format!(
            "--init-noise {}: tensor \"noise\" has shape {:?}, this model and size need {:?}",
            path.display(),
            t.dims(),
            expected
        )));
    }
    t.to_dtype(candle_core::DType::F32)
}
