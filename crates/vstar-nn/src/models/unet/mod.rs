//! UNet2DConditionModel: the denoiser of SD 1.5 / 2.1 / XL and Toyland, one code path.

mod embeddings;
mod transformer;

pub use embeddings::timestep_features;

use super::resnet::{Downsample, ResnetBlock, Upsample};
use crate::config::{BlockSpec, UNetConfig};
use crate::layers::attention::Ctx;
use crate::layers::conv::Conv2d;
use crate::layers::group_norm::GroupNorm;
use crate::layers::Slots;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use embeddings::{TextTimeEmbedding, TimestepEmbedding};
use transformer::{Transformer2D, TransformerSpec};

/// SDXL's extra conditioning: pooled text embedding (B, P) and size/crop ids (B, 6).
#[derive(Debug, Clone)]
pub struct AddedCond {
    pub text_embeds: Tensor,
    pub time_ids: Tensor,
}

#[derive(Debug, Clone)]
struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<Transformer2D>,
}

impl Level {
    fn forward_layer(&self, i: usize, x: &Tensor, temb: &Tensor, context: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = self.resnets[i].forward(x, Some(temb), ctx.adapter_scale.as_ref())?;
        match self.attentions.get(i) {
            Some(a) => a.forward(&h, context, ctx),
            None => Ok(h),
        }
    }
}

/// What `addition_embed_type` adds to the time embedding.
#[derive(Debug, Clone)]
enum AddEmbedding {
    /// SDXL (`text_time`): pooled text embedding and size/crop ids, given by the caller.
    TextTime(TimestepEmbedding),
    /// `text`: the UNet pools the text embeddings it is given itself.
    Text(TextTimeEmbedding),
}

#[derive(Debug, Clone)]
pub struct UNet {
    pub config: UNetConfig,
    pub slots: Slots,
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    add_embedding: Option<AddEmbedding>,
    down: Vec<(Level, Option<Downsample>)>,
    mid: (ResnetBlock, Transformer2D, ResnetBlock),
    up: Vec<(Level, Option<Upsample>)>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

fn transformer(
    cfg: &UNetConfig,
    spec: &BlockSpec,
    layers: usize,
    vb: VarBuilder,
    slots: &Slots,
) -> Result<Transformer2D> {
    let ts = TransformerSpec {
        channels: spec.channels,
        heads: spec.heads,
        layers,
        context_dim: spec.cross_attention_dim,
        groups: cfg.norm_num_groups,
        linear_projection: cfg.use_linear_projection,
    };
    Transformer2D::new(&ts, vb, slots)
}

impl UNet {
    pub fn new(config: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        let cfg = config;
        let slots = Slots::default();
        let blocks = cfg.blocks()?;
        let (g, eps) = (cfg.norm_num_groups, cfg.norm_eps);
        let c0 = cfg.block_out_channels[0];
        let temb_dim = cfg.time_embed_dim();
        let kin = cfg.conv_in_kernel;
        let conv_in = Conv2d::adapted(cfg.in_channels, c0, kin, 1, (kin - 1) / 2, vb.pp("conv_in"), &slots)?;
        let time_embedding = TimestepEmbedding::new(c0, temb_dim, vb.pp("time_embedding"), &slots)?;
        let vba = vb.pp("add_embedding");
        let add_embedding = match (cfg.addition_embed_type.as_deref(), cfg.projection_class_embeddings_input_dim) {
            (Some("text"), _) => {
                // One text width for every block (checked by the config): the pooled tokens'.
                let (dim, heads) = (blocks[0].cross_attention_dim, cfg.addition_embed_type_num_heads);
                Some(AddEmbedding::Text(TextTimeEmbedding::new(dim, temb_dim, heads, vba, &slots)?))
            }
            (Some(_), Some(d)) => Some(AddEmbedding::TextTime(TimestepEmbedding::new(d, temb_dim, vba, &slots)?)),
            _ => None,
        };
        let n = blocks.len();

        let mut down = Vec::with_capacity(n);
        let mut cin = c0;
        for (i, spec) in blocks.iter().enumerate() {
            let vbb = vb.pp(format!("down_blocks.{i}"));
            let mut level = Level { resnets: vec![], attentions: vec![] };
            for j in 0..spec.layers {
                let rin = if j == 0 { cin } else { spec.channels };
                level.resnets.push(ResnetBlock::new(
                    rin,
                    spec.channels,
                    Some(temb_dim),
                    g,
                    eps,
                    vbb.pp(format!("resnets.{j}")),
                    &slots,
                )?);
                if spec.cross_attention {
                    level.attentions.push(transformer(
                        cfg,
                        spec,
                        spec.transformer_layers,
                        vbb.pp(format!("attentions.{j}")),
                        &slots,
                    )?);
                }
            }
            let ds = (i + 1 < n)
                .then(|| Downsample::new(spec.channels, cfg.downsample_padding, vbb.pp("downsamplers.0"), &slots))
                .transpose()?;
            down.push((level, ds));
            cin = spec.channels;
        }

        let last = &blocks[n - 1];
        let vbm = vb.pp("mid_block");
        let mid = (
            ResnetBlock::new(last.channels, last.channels, Some(temb_dim), g, eps, vbm.pp("resnets.0"), &slots)?,
            transformer(cfg, last, last.transformer_layers, vbm.pp("attentions.0"), &slots)?,
            ResnetBlock::new(last.channels, last.channels, Some(temb_dim), g, eps, vbm.pp("resnets.1"), &slots)?,
        );

        // Up blocks mirror the down blocks; each resnet takes one skip connection.
        let rev: Vec<&BlockSpec> = blocks.iter().rev().collect();
        let mut up = Vec::with_capacity(n);
        let mut prev_out = last.channels;
        for (i, spec) in rev.iter().enumerate() {
            let vbb = vb.pp(format!("up_blocks.{i}"));
            let skip_in = rev[(i + 1).min(n - 1)].channels;
            let cross = cfg.up_block_types[i] == "CrossAttnUpBlock2D";
            let mut level = Level { resnets: vec![], attentions: vec![] };
            for j in 0..=spec.layers {
                let skip = if j == spec.layers { skip_in } else { spec.channels };
                let rin = if j == 0 { prev_out } else { spec.channels };
                level.resnets.push(ResnetBlock::new(
                    rin + skip,
                    spec.channels,
                    Some(temb_dim),
                    g,
                    eps,
                    vbb.pp(format!("resnets.{j}")),
                    &slots,
                )?);
                if cross {
                    level.attentions.push(transformer(
                        cfg,
                        spec,
                        spec.transformer_layers,
                        vbb.pp(format!("attentions.{j}")),
                        &slots,
                    )?);
                }
            }
            let us = (i + 1 < n).then(|| Upsample::new(spec.channels, vbb.pp("upsamplers.0"), &slots)).transpose()?;
            up.push((level, us));
            prev_out = spec.channels;
        }

        let kout = cfg.conv_out_kernel;
        Ok(Self {
            config: cfg.clone(),
            conv_in,
            time_embedding,
            add_embedding,
            down,
            mid,
            up,
            conv_norm_out: GroupNorm::adapted(g, c0, eps, vb.pp("conv_norm_out"), &slots)?,
            conv_out: Conv2d::adapted(c0, cfg.out_channels, kout, 1, (kout - 1) / 2, vb.pp("conv_out"), &slots)?,
            slots,
        })
    }

    /// Noise prediction. `x`: (B, C, h, w) latents; `t`: (B,) timesteps (float allowed);
    /// `context`: (B, M, D) text embeddings; `added`: SDXL's pooled text + time ids.
    pub fn forward(
        &self,
        x: &Tensor,
        t: &Tensor,
        context: &Tensor,
        added: Option<&AddedCond>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let b = x.dim(0)?;
        let t = if t.rank() == 0 || t.dim(0)? == 1 { t.reshape(1)?.broadcast_as(b)?.contiguous()? } else { t.clone() };
        let tf = timestep_features(&t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)?;
        let scale = ctx.adapter_scale.clone();
        let scale = scale.as_ref();
        let mut temb = self.time_embedding.forward(&tf, scale)?;
        match &self.add_embedding {
            Some(AddEmbedding::TextTime(add)) => {
                let a = added.ok_or_else(|| {
                    candle_core::Error::Msg("this UNet (SDXL-style) needs pooled text embeddings and time ids".into())
                })?;
                let dim = cfg.addition_time_embed_dim.unwrap_or(0);
                let ids = a.time_ids.flatten_all()?;
                let time_feats = timestep_features(&ids, dim, cfg.flip_sin_to_cos, cfg.freq_shift)?.reshape((b, ()))?;
                let feats = Tensor::cat(&[&a.text_embeds, &time_feats], 1)?;
                temb = (temb + add.forward(&feats, scale)?)?;
            }
            Some(AddEmbedding::Text(add)) => temb = temb.broadcast_add(&add.forward(context, scale)?)?,
            None => {}
        }
        let temb = temb.silu()?;

        let mut h = self.conv_in.forward_scaled(x, scale)?;
        let mut skips = vec![h.clone()];
        for (level, ds) in &self.down {
            for i in 0..level.resnets.len() {
                h = level.forward_layer(i, &h, &temb, context, ctx)?;
                skips.push(h.clone());
            }
            if let Some(ds) = ds {
                h = ds.forward(&h, scale)?;
                skips.push(h.clone());
            }
        }
        h = self.mid.0.forward(&h, Some(&temb), scale)?;
        h = self.mid.1.forward(&h, context, ctx)?;
        h = self.mid.2.forward(&h, Some(&temb), scale)?;
        for (level, us) in &self.up {
            for i in 0..level.resnets.len() {
                let skip = skips.pop().expect("one skip per up resnet");
                h = Tensor::cat(&[&h, &skip], 1)?;
                h = level.forward_layer(i, &h, &temb, context, ctx)?;
            }
            if let Some(us) = us {
                let size = skips.last().map(|s| (s.dim(2).unwrap_or(0), s.dim(3).unwrap_or(0)));
                h = us.forward(&h, size, scale)?;
            }
        }
        self.conv_out.forward_scaled(&self.conv_norm_out.forward_silu(&h, scale)?, scale)
    }
}
