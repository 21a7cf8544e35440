//! Transformer2DModel and BasicTransformerBlock: self-attention, cross-attention to the
//! text embeddings, GEGLU feed-forward; projection in/out by 1x1 conv or linear.

use crate::layers::attention::Ctx;
use crate::layers::conv::Conv2d;
use crate::layers::geglu::geglu;
use crate::layers::group_norm::GroupNorm;
use crate::layers::ops::LayerNorm;
use crate::layers::{AdaptedLinear, Attention, Slots};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
struct FeedForward {
    proj: AdaptedLinear,
    out: AdaptedLinear,
}

impl FeedForward {
    fn new(dim: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        let inner = dim * 4;
        Ok(Self {
            proj: AdaptedLinear::new(dim, inner * 2, true, vb.pp("net.0.proj"), slots)?,
            out: AdaptedLinear::new(inner, dim, true, vb.pp("net.2"), slots)?,
        })
    }

    fn forward(&self, x: &Tensor, s: Option<&Tensor>) -> Result<Tensor> {
        self.out.forward(&geglu(&self.proj.forward(x, s)?)?, s)
    }
}

#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn new(dim: usize, context_dim: usize, heads: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::adapted(dim, 1e-5, vb.pp("norm1"), slots)?,
            attn1: Attention::new(dim, None, heads, vb.pp("attn1"), slots)?,
            norm2: LayerNorm::adapted(dim, 1e-5, vb.pp("norm2"), slots)?,
            attn2: Attention::new(dim, Some(context_dim), heads, vb.pp("attn2"), slots)?,
            norm3: LayerNorm::adapted(dim, 1e-5, vb.pp("norm3"), slots)?,
            ff: FeedForward::new(dim, vb.pp("ff"), slots)?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor, hw: (usize, usize), ctx: &mut Ctx) -> Result<Tensor> {
        let s = ctx.adapter_scale.clone();
        let x = (self.attn1.forward(&self.norm1.forward_scaled(x, s.as_ref())?, None, hw, ctx)? + x)?;
        let x = (self.attn2.forward(&self.norm2.forward_scaled(&x, s.as_ref())?, Some(context), hw, ctx)? + &x)?;
        self.ff.forward(&self.norm3.forward_scaled(&x, s.as_ref())?, s.as_ref())? + x
    }
}

#[derive(Debug, Clone)]
enum Proj {
    Conv(Conv2d),
    Linear(AdaptedLinear),
}

#[derive(Debug, Clone)]
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Proj,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Proj,
}

pub struct TransformerSpec {
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
}

impl Transformer2D {
    pub fn new(spec: &TransformerSpec, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        let c = spec.channels;
        let proj = |name: &str| -> Result<Proj> {
            Ok(if spec.linear_projection {
                Proj::Linear(AdaptedLinear::new(c, c, true, vb.pp(name), slots)?)
            } else {
                Proj::Conv(Conv2d::adapted(c, c, 1, 1, 0, vb.pp(name), slots)?)
            })
        };
        let blocks = (0..spec.layers)
            .map(|i| {
                BasicTransformerBlock::new(
                    c,
                    spec.context_dim,
                    spec.heads,
                    vb.pp(format!("transformer_blocks.{i}")),
                    slots,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            norm: GroupNorm::adapted(spec.groups, c, 1e-6, vb.pp("norm"), slots)?,
            proj_in: proj("proj_in")?,
            blocks,
            proj_out: proj("proj_out")?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let s = ctx.adapter_scale.clone();
        let normed = self.norm.forward_scaled(x, s.as_ref())?;
        let to_seq = |t: &Tensor| -> Result<Tensor> { t.permute((0, 2, 3, 1))?.reshape((b, h * w, t.dim(1)?)) };
        let mut hs = match &self.proj_in {
            Proj::Conv(conv) => to_seq(&conv.forward_scaled(&normed, s.as_ref())?)?,
            Proj::Linear(lin) => lin.forward(&to_seq(&normed)?, s.as_ref())?,
        };
        for block in &self.blocks {
            hs = block.forward(&hs, context, (h, w), ctx)?;
        }
        let to_img = |t: &Tensor| -> Result<Tensor> { t.reshape((b, h, w, c))?.permute((0, 3, 1, 2)) };
        let out = match &self.proj_out {
            Proj::Conv(conv) => conv.forward_scaled(&to_img(&hs)?.contiguous()?, s.as_ref())?,
            Proj::Linear(lin) => to_img(&lin.forward(&hs, s.as_ref())?)?,
        };
        out + x
    }
}
