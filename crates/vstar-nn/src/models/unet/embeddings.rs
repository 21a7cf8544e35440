//! Sinusoidal timestep features and the MLP that embeds them (diffusers `Timesteps`,
//! `TimestepEmbedding`).

use crate::layers::{AdaptedLinear, Slots};
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// (N,) float timesteps -> (N, dim) features `[sin, cos]` (or `[cos, sin]` when flipped).
pub fn timestep_features(t: &Tensor, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<Tensor> {
    let half = dim / 2;
    let exponent: Vec<f32> =
        (0..half).map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - freq_shift)).exp() as f32).collect();
    let freqs = Tensor::new(exponent.as_slice(), t.device())?;
    let args = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&freqs.unsqueeze(0)?)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip_sin_to_cos { Tensor::cat(&[cos, sin], 1)? } else { Tensor::cat(&[sin, cos], 1)? };
    if dim % 2 == 1 {
        emb.pad_with_zeros(1, 0, 1)
    } else {
        Ok(emb)
    }
}

#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    linear_1: AdaptedLinear,
    linear_2: AdaptedLinear,
}

impl TimestepEmbedding {
    pub fn new(cin: usize, dim: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        Ok(Self {
            linear_1: AdaptedLinear::new(cin, dim, true, vb.pp("linear_1"), slots)?,
            linear_2: AdaptedLinear::new(dim, dim, true, vb.pp("linear_2"), slots)?,
        })
    }

    /// `scale`: one adapter strength per batch row (B,); None = strength 1.
    pub fn forward(&self, x: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x, scale)?.silu()?, scale)
    }
}
