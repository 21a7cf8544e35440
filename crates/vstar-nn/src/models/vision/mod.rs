//! Image encoders for the evaluation metrics (CLIP-I, CLIP-T, DINO) in transformers'
//! safetensors layouts: CLIP's vision tower (CLIPModel, CLIPVisionModel[WithProjection]),
//! ViTModel as DINO ships it, and Dinov2Model. Inference only.

mod bicubic;
mod block;
pub mod clip;
pub mod config;
mod embed;
pub mod keys;
pub mod sam;
pub mod vit;

pub use clip::{ClipText, ClipVision};
pub use config::{Activation, Family, TowerConfig, VisionConfig};
pub use vit::Vit;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// What an image encoder returns for a batch of images.
#[derive(Debug, Clone)]
pub struct VisionOutput {
    /// (B, 1 + N, D): CLIP's before its post-layernorm, ViT's / DINOv2's after the final one.
    pub last_hidden: Tensor,
    /// (B, D): the class token after the (post-)layernorm.
    pub pooled: Tensor,
    /// (B, P): `visual_projection` of `pooled`, for CLIP models that have one.
    pub image_embeds: Option<Tensor>,
}

impl VisionOutput {
    /// What similarity metrics compare: the projected embedding if any, else the pooled token.
    pub fn features(&self) -> &Tensor {
        self.image_embeds.as_ref().unwrap_or(&self.pooled)
    }
}

#[derive(Debug, Clone)]
pub enum VisionModel {
    Clip(ClipVision),
    Vit(Vit),
}

impl VisionModel {
    /// The image side of the checkpoint `vb` reads (its root), as `cfg` describes it.
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg.family {
            Family::Clip => Self::Clip(ClipVision::new(cfg, vb)?),
            Family::Vit | Family::Dinov2 => Self::Vit(Vit::new(cfg, vb)?),
        })
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<VisionOutput> {
        match self {
            Self::Clip(m) => m.forward(pixels),
            Self::Vit(m) => m.forward(pixels),
        }
    }
}

/// Rows scaled to unit length (B, D).
pub fn unit_rows(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?)
}
