//! Building blocks shared by every model: adapted linears, attention with hooks, norms.

pub mod attention;
pub mod bias;
pub mod conv;
mod fast_exp;
pub mod fused_attention;
pub mod geglu;
mod gemm;
pub mod group_norm;
pub mod hooks;
mod lanes;
mod layer_norm;
pub mod linear;
pub mod ops;
pub mod product;
pub mod self_attention;
pub mod softmax;
pub mod upsample;

pub use attention::Attention;
pub use hooks::AttentionHooks;
pub use linear::{AdaptedLinear, Delta, Slots};

/// The largest absolute difference of two same-shape tensors (the layer tests' comparison).
#[cfg(test)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}
