//! CLIP's vision tower (transformers `CLIPVisionModel`, `CLIPVisionModelWithProjection`, the
//! image half of `CLIPModel`) and the text half of a full `CLIPModel` checkpoint.

use super::block::Encoder;
use super::config::{Family, VisionConfig};
use super::embed::{require_size, PatchEmbed, Positions};
use super::{unit_rows, VisionOutput};
use crate::config::ClipTextConfig;
use crate::layers::ops::LayerNorm;
use crate::layers::{AdaptedLinear, Slots};
use crate::models::ClipTextModel;
use candle_core::{IndexOp, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct ClipVision {
    patch: PatchEmbed,
    class_embedding: Tensor,
    positions: Positions,
    pre_layernorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    projection: Option<AdaptedLinear>,
    image_size: usize,
}

impl ClipVision {
    /// `vb` at the checkpoint's root; `visual_projection` is read when the config has one.
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let t = &cfg.tower;
        let (d, eps) = (t.hidden_size, t.layer_norm_eps);
        // transformers 5 saves CLIPVisionModel without the `vision_model.` prefix that
        // CLIPModel, CLIPVisionModelWithProjection and transformers 4 checkpoints carry.
        let vm = if vb.contains_tensor("embeddings.class_embedding") { vb.clone() } else { vb.pp("vision_model") };
        let emb = vm.pp("embeddings");
        let table = emb.pp("position_embedding").get((Positions::rows(t), d), "weight")?;
        let projection = match cfg.projection_dim {
            Some(p) => Some(AdaptedLinear::new(d, p, false, vb.pp("visual_projection"), &Slots::default())?),
            None => None,
        };
        Ok(Self {
            patch: PatchEmbed::new(t, false, emb.pp("patch_embedding"))?,
            class_embedding: emb.get(d, "class_embedding")?,
            positions: Positions::new(table, t),
            pre_layernorm: LayerNorm::new(d, eps, vm.pp("pre_layrnorm"))?,
            encoder: Encoder::new(Family::Clip, t, &vm)?,
            post_layernorm: LayerNorm::new(d, eps, vm.pp("post_layernorm"))?,
            projection,
            image_size: t.image_size,
        })
    }

    /// Pixels (B, 3, S, S), normalised as the model's processor does.
    pub fn forward(&self, pixels: &Tensor) -> Result<VisionOutput> {
        require_size(pixels, self.image_size)?;
        let (patches, grid) = self.patch.forward(pixels)?;
        let tokens = self.positions.tokens(&self.class_embedding, &patches, grid)?;
        let last_hidden = self.encoder.forward(&self.pre_layernorm.forward(&tokens)?)?;
        let pooled = self.post_layernorm.forward(&last_hidden.i((.., 0))?)?;
        let image_embeds = match &self.projection {
            Some(p) => Some(p.forward(&pooled, None)?),
            None => None,
        };
        Ok(VisionOutput { last_hidden, pooled, image_embeds })
    }
}

/// A `CLIPModel`'s text tower with its `text_projection`, and the learned logit scale.
#[derive(Debug, Clone)]
pub struct ClipText {
    pub encoder: ClipTextModel,
    logit_scale: f64,
}

impl ClipText {
    /// `cfg`: `VisionConfig::text` of the same checkpoint; `vb` at its root.
    pub fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let logit_scale = vb.get((), "logit_scale")?.to_scalar::<f32>()? as f64;
        Ok(Self { encoder: ClipTextModel::new(cfg, vb)?, logit_scale })
    }

    /// Unit-length text embeddings (B, P) of token ids (B, N).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        unit_rows(&self.encoder.forward(ids, None)?.pooled)
    }

    /// `CLIPModel`'s logits_per_image (images x texts): exp(logit_scale) times the cosine.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Result<Tensor> {
        unit_rows(image_embeds)?.matmul(&unit_rows(text_embeds)?.t()?)? * self.logit_scale.exp()
    }
}
