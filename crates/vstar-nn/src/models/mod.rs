//! The Stable-Diffusion-family models, written against diffusers' / transformers' parameter
//! names so real checkpoints and Toyland's own weights load through the same code.

pub mod clip_text;
pub mod resnet;
pub mod unet;
pub mod vae;
pub mod vision;

pub use clip_text::ClipTextModel;
pub use unet::{AddedCond, UNet};
pub use vae::{DiagonalGaussian, Vae};

use crate::layers::conv::Conv2d;
use candle_core::Result;
use candle_nn::VarBuilder;

/// A conv2d with diffusers' parameter names and default initialisation hints.
pub fn conv2d(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::new(cin, cout, k, stride, padding, vb)
}
