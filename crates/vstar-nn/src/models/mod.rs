//! The Stable-Diffusion-family models, written against diffusers' / transformers' parameter
//! names so real checkpoints and Toyland's own weights load through the same code.

pub mod clip_text;
pub mod resnet;
pub mod unet;
pub mod vae;

pub use clip_text::ClipTextModel;
pub use unet::{AddedCond, UNet};
pub use vae::{DiagonalGaussian, Vae};

use candle_core::Result;
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

/// A conv2d with diffusers' default initialisation hints.
pub fn conv2d(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig { padding, stride, ..Default::default() };
    candle_nn::conv2d(cin, cout, k, cfg, vb)
}
