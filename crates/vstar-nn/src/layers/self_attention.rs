//! Multi-head self-attention of the CLIP-style encoders (text and vision towers): q, k, v and
//! out projections as adapted linears, an optional additive mask (the text tower's causal one).

use super::ops::softmax_last;
use super::AdaptedLinear;
use candle_core::{Result, Tensor};

#[derive(Debug, Clone)]
pub struct SelfAttention {
    pub q: AdaptedLinear,
    pub k: AdaptedLinear,
    pub v: AdaptedLinear,
    pub out: AdaptedLinear,
    pub heads: usize,
}

impl SelfAttention {
    /// `x` (B, N, C); `mask` broadcasts against the (B, heads, N, N) scores; `s` is the
    /// per-row adapter scale.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, s: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, n, self.heads, c / self.heads))?.transpose(1, 2)?.contiguous()
        };
        let scale = 1.0 / ((c / self.heads) as f64).sqrt();
        let q = split((self.q.forward(x, s)? * scale)?)?;
        let k = split(self.k.forward(x, s)?)?;
        let v = split(self.v.forward(x, s)?)?;
        let scores = crate::flops::matmul(&q, &k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let o = crate::flops::matmul(&softmax_last(&scores)?, &v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.out.forward(&o, s)
    }
}
