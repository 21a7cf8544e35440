//! Ops with two paths: candle's fused kernels (fast, no backward) when nothing needs a
//! gradient, differentiable ones (composed, or custom ops with a backward) when the input or
//! a weight is tracked.
//! This is the one place that decides, so a trainable path can never hit a fused kernel.

use super::linear::{forward_folded, DeltaList, Slots};
use candle_core::{Result, Tensor};

fn tracked(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    if tracked(&[x]) {
        super::softmax::softmax_last(x)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// LayerNorm over the last dimension with affine weight and bias.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if tracked(&[x, weight, bias]) {
        super::layer_norm::layer_norm(x, weight, bias, eps)
    } else {
        candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, eps as f32)
    }
}

/// x * sigmoid(1.702 x), CLIP's activation.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.silu()
}

/// A LayerNorm module holding its parameters.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    /// Adapter deltas on the gain `weight`; empty unless `adapted`.
    deltas: DeltaList,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: candle_nn::VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, eps, deltas: DeltaList::default() })
    }

    /// A LayerNorm whose gain adapters attach to via `slots` (as `GroupNorm::adapted`).
    pub fn adapted(dim: usize, eps: f64, vb: candle_nn::VarBuilder, slots: &Slots) -> Result<Self> {
        let name = vb.prefix();
        let mut norm = Self::new(dim, eps, vb)?;
        norm.deltas = slots.register(name, &norm.weight)?;
        Ok(norm)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_scaled(x, None)
    }

    /// `scale`: one adapter strength per batch row (B,); None = strength 1.
    pub fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        let full = |g: &Tensor| layer_norm(x, g, &self.bias, self.eps);
        let part = |dg: &Tensor| layer_norm(x, dg, &self.bias.zeros_like()?, self.eps);
        forward_folded(&self.deltas, &self.weight, scale, full, part)
    }
}
