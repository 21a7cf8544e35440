//! ViT image encoders in transformers' layouts: `ViTModel` as DINO (facebook/dino-vits16)
//! ships it, and `Dinov2Model`. Both pool to the final layernorm of the class token.

use super::block::Encoder;
use super::config::{Family, VisionConfig};
use super::embed::{require_size, PatchEmbed, Positions};
use super::VisionOutput;
use crate::layers::ops::LayerNorm;
use candle_core::{IndexOp, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Vit {
    family: Family,
    patch: PatchEmbed,
    cls_token: Tensor,
    positions: Positions,
    encoder: Encoder,
    layernorm: LayerNorm,
    image_size: usize,
}

impl Vit {
    /// `vb` at the checkpoint's root; a ViT pooler, if saved, is left unused.
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let t = &cfg.tower;
        let d = t.hidden_size;
        let rows = Positions::rows(t);
        let emb = vb.pp("embeddings");
        let table = emb.get((1, rows, d), "position_embeddings")?.reshape((rows, d))?;
        Ok(Self {
            family: cfg.family,
            patch: PatchEmbed::new(t, true, emb.pp("patch_embeddings.projection"))?,
            cls_token: emb.get((1, 1, d), "cls_token")?.reshape(d)?,
            positions: Positions::new(table, t),
            encoder: Encoder::new(cfg.family, t, &vb)?,
            layernorm: LayerNorm::new(d, t.layer_norm_eps, vb.pp("layernorm"))?,
            image_size: t.image_size,
        })
    }

    /// Pixels (B, 3, H, W): ViT needs its training size, DINOv2 reads any size of at least one
    /// patch (position embeddings are resampled to the patch grid).
    pub fn forward(&self, pixels: &Tensor) -> Result<VisionOutput> {
        if self.family == Family::Vit {
            require_size(pixels, self.image_size)?;
        }
        let (patches, grid) = self.patch.forward(pixels)?;
        let tokens = self.positions.tokens(&self.cls_token, &patches, grid)?;
        let last_hidden = self.layernorm.forward(&self.encoder.forward(&tokens)?)?;
        let pooled = last_hidden.i((.., 0))?.contiguous()?;
        Ok(VisionOutput { last_hidden, pooled, image_embeds: None })
    }
}
