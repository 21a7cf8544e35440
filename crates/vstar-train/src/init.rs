//! Seeded initialisation. candle's CPU rng cannot be seeded, so fresh vars are redrawn from a
//! seeded normal with each var's own mean and spread (constant inits - norm weights, zero
//! biases - are kept): the same seed then gives the same starting weights.

use candle_core::{Result, Var};
use vstar_diffusion::noise::NoiseSource;

pub fn reseed(vars: &[(String, Var, f64)], seed: u64) -> Result<()> {
    let mut noise = NoiseSource::new(seed);
    for (_, var, _) in vars {
        let t = var.as_tensor();
        let mean = t.mean_all()?.to_scalar::<f32>()? as f64;
        let std = (t.affine(1.0, -mean)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64).sqrt();
        if std == 0.0 {
            continue;
        }
        var.set(&noise.randn(t.shape(), t.device())?.affine(std, mean)?)?;
    }
    Ok(())
}
