//! Sinusoidal timestep features and the MLP that embeds them (diffusers `Timesteps`,
//! `TimestepEmbedding`), and the pooled-text addition embedding (`TextTimeEmbedding`).

use crate::layers::ops::{softmax_last, LayerNorm};
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

/// diffusers' `TextTimeEmbedding` (`addition_embed_type: "text"`): the text embeddings pooled
/// by attention into one vector that is added to the time embedding, so the prompt reaches
/// every ResNet block, not only the cross-attention levels.
#[derive(Debug, Clone)]
pub struct TextTimeEmbedding {
    norm1: LayerNorm,
    pool: AttentionPooling,
    proj: AdaptedLinear,
    norm2: LayerNorm,
}

impl TextTimeEmbedding {
    pub fn new(dim: usize, temb_dim: usize, heads: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::new(dim, 1e-5, vb.pp("norm1"))?,
            pool: AttentionPooling::new(dim, heads, vb.pp("pool"), slots)?,
            proj: AdaptedLinear::new(dim, temb_dim, true, vb.pp("proj"), slots)?,
            norm2: LayerNorm::new(temb_dim, 1e-5, vb.pp("norm2"))?,
        })
    }

    /// (B, L, D) text embeddings -> (B, temb_dim).
    pub fn forward(&self, text: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        let pooled = self.pool.forward(&self.norm1.forward(text)?, scale)?;
        self.norm2.forward(&self.proj.forward(&pooled, scale)?)
    }
}

/// One query - the mean token plus a learned position - attending over itself and the tokens
/// (diffusers' `AttentionPooling`, from DeepFloyd IF).
#[derive(Debug, Clone)]
struct AttentionPooling {
    positional_embedding: Tensor,
    q_proj: AdaptedLinear,
    k_proj: AdaptedLinear,
    v_proj: AdaptedLinear,
    heads: usize,
}

impl AttentionPooling {
    fn new(dim: usize, heads: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        let init = candle_nn::Init::Randn { mean: 0.0, stdev: (dim as f64).powf(-0.5) };
        Ok(Self {
            positional_embedding: vb.get_with_hints((1, dim), "positional_embedding", init)?,
            q_proj: AdaptedLinear::new(dim, dim, true, vb.pp("q_proj"), slots)?,
            k_proj: AdaptedLinear::new(dim, dim, true, vb.pp("k_proj"), slots)?,
            v_proj: AdaptedLinear::new(dim, dim, true, vb.pp("v_proj"), slots)?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, d) = x.dims3()?;
        let query = x.mean_keepdim(1)?.broadcast_add(&self.positional_embedding)?;
        let tokens = Tensor::cat(&[&query, x], 1)?;
        let heads = |t: Tensor| t.reshape((b, (), self.heads, d / self.heads))?.transpose(1, 2)?.contiguous();
        let q = heads(self.q_proj.forward(&query, scale)?)?;
        let k = heads(self.k_proj.forward(&tokens, scale)?)?;
        let v = heads(self.v_proj.forward(&tokens, scale)?)?;
        let w = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / ((d / self.heads) as f64).sqrt())?;
        softmax_last(&w)?.matmul(&v)?.reshape((b, d))
    }
}
