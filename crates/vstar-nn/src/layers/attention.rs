//! Multi-head attention of the UNet's transformer blocks (diffusers `Attention`), self or
//! cross, with the hooks of `hooks.rs`.

use super::fused_attention::fused_attention;
use super::hooks::{copy_rows, AttentionHooks, RecordedMap};
use super::linear::{AdaptedLinear, Slots};
use super::ops::softmax_last;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// What a forward pass carries besides activations.
#[derive(Default)]
pub struct Ctx<'a> {
    /// One adapter strength per batch row (B,); None = every adapter at strength 1.
    pub adapter_scale: Option<Tensor>,
    pub hooks: Option<&'a mut AttentionHooks>,
}

impl<'a> Ctx<'a> {
    pub fn new(adapter_scale: Option<Tensor>, hooks: Option<&'a mut AttentionHooks>) -> Self {
        Self { adapter_scale, hooks }
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    to_q: AdaptedLinear,
    to_k: AdaptedLinear,
    to_v: AdaptedLinear,
    to_out: AdaptedLinear,
    heads: usize,
    scale: f64,
    is_cross: bool,
    name: String,
}

impl Attention {
    /// `context_dim` None = self-attention.
    pub fn new(dim: usize, context_dim: Option<usize>, heads: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        let head_dim = dim / heads;
        let kv_dim = context_dim.unwrap_or(dim);
        Ok(Self {
            to_q: AdaptedLinear::new(dim, dim, false, vb.pp("to_q"), slots)?,
            to_k: AdaptedLinear::new(kv_dim, dim, false, vb.pp("to_k"), slots)?,
            to_v: AdaptedLinear::new(kv_dim, dim, false, vb.pp("to_v"), slots)?,
            to_out: AdaptedLinear::new(dim, dim, true, vb.pp("to_out.0"), slots)?,
            heads,
            scale: 1.0 / (head_dim as f64).sqrt(),
            is_cross: context_dim.is_some(),
            name: vb.prefix(),
        })
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.heads, c / self.heads))?.transpose(1, 2)?.contiguous()
    }

    /// x: (B, N, C); context: (B, M, Cc) for cross-attention; (h, w) the spatial size of N.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>, hw: (usize, usize), ctx: &mut Ctx) -> Result<Tensor> {
        let s = ctx.adapter_scale.as_ref();
        let kv_in = context.unwrap_or(x);
        let mut q = self.split_heads(&self.to_q.forward(x, s)?)?;
        let mut k = self.split_heads(&self.to_k.forward(kv_in, s)?)?;
        let v = self.split_heads(&self.to_v.forward(kv_in, s)?)?;
        if let Some(hooks) = ctx.hooks.as_deref_mut() {
            if self.is_cross && !hooks.record_tokens.is_empty() {
                // Recording needs the probabilities themselves: the explicit (B, H, N, M) map,
                // cheap for cross-attention (M = 77 tokens).
                let scores = (crate::flops::matmul(&q, &k.t()?)? * self.scale)?;
                self.record_probs(softmax_last(&scores)?, hw, hooks)?;
            }
            // A copied map row is softmax(q k^T) of the source row: copying the q and k rows
            // copies it, and the output stays the fused op's, so rows that nothing is copied
            // into come out exactly as without hooks.
            let pairs = if self.is_cross { &hooks.copy_cross_maps } else { &hooks.copy_self_maps };
            (q, k) = (copy_rows(&q, pairs)?, copy_rows(&k, pairs)?);
        }
        let ((b, heads, n, d), (m, dv)) = (q.dims4()?, (v.dim(2)?, v.dim(3)?));
        // The two products softmax(q k^T) v computes, as `flops::matmul` counted them before.
        crate::flops::add(2 * (b * heads * n * m) as u64 * (d + dv) as u64);
        let out = fused_attention(&q, &k, &v, self.scale)?.transpose(1, 2)?.reshape((b, n, ()))?;
        let mut out = self.to_out.forward(&out, s)?;
        if let Some(h) = ctx.hooks.as_deref() {
            if !self.is_cross && !h.copy_self_features.is_empty() {
                out = copy_rows(&out, &h.copy_self_features)?;
            }
        }
        Ok(out)
    }

    /// Records the chosen tokens' probabilities (B, H, N, M), after the map copies.
    fn record_probs(&self, probs: Tensor, (h, w): (usize, usize), hooks: &mut AttentionHooks) -> Result<()> {
        let probs = copy_rows(&probs, &hooks.copy_cross_maps)?;
        let (b, _, n, _) = probs.dims4()?;
        let pos: Vec<u32> = hooks.record_tokens.iter().map(|&p| p as u32).collect();
        let pos = Tensor::new(pos.as_slice(), probs.device())?;
        let picked = probs.index_select(&pos, 3)?.mean(1)?; // (B, N, P)
        let maps = picked.transpose(1, 2)?.reshape((b, pos.dim(0)?, h, w))?;
        debug_assert_eq!(n, h * w);
        hooks.recorded.push(RecordedMap { layer: self.name.clone(), probs: maps });
        Ok(())
    }
}
