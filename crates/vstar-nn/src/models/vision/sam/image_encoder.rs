//! SAM's image encoder (transformers' `SamVisionEncoder`): a ViT over a channels-last patch
//! grid with an absolute position table, pre-norm blocks whose attention runs in windows
//! (zero-padded to a multiple of the window) or globally, both with decomposed relative
//! positions, then the neck (1x1 conv, layernorm, 3x3 conv, layernorm) to `output_channels`.

use super::config::{SamActivation, SamVisionConfig};
use super::Lin;
use crate::layers::conv::Conv2d;
use crate::layers::ops::{softmax_last, LayerNorm};
use candle_core::{Error, IndexOp, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Scores per attention chunk (f32 elements): bounds memory on the 4096-token global layers
/// of real checkpoints (a 4096 x 4096 map per head).
const CHUNK_ELEMENTS: usize = 1 << 25;

/// LayerNorm over the channels of an NCHW tensor (transformers' `SamLayerNorm`, channels_first).
pub(super) fn layer_norm_nchw(norm: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    norm.forward(&x.permute((0, 2, 3, 1))?)?.permute((0, 3, 1, 2))
}

/// Relative-position tables gathered for one side `s`: (s, s, head_dim), row i column j holding
/// `rel_pos[i - j + s - 1]` (transformers' `get_rel_pos` when query and key sides are equal, as
/// they always are here: the interpolation it does is then the identity).
fn gather_rel(rel_pos: &Tensor, s: usize) -> Result<Tensor> {
    let idx: Vec<u32> = (0..s).flat_map(|i| (0..s).map(move |j| (i + s - 1 - j) as u32)).collect();
    let idx = Tensor::from_vec(idx, s * s, rel_pos.device())?;
    let hd = rel_pos.dim(1)?;
    rel_pos.index_select(&idx, 0)?.reshape((s, s, hd))
}

#[derive(Debug, Clone)]
struct Attention {
    qkv: Lin,
    proj: Lin,
    heads: usize,
    /// Gathered (side, side, head_dim) height and width tables.
    rel: Option<(Tensor, Tensor)>,
}

impl Attention {
    /// `side`: the window side, or the grid side for a global layer.
    fn new(cfg: &SamVisionConfig, side: usize, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let hd = d / cfg.num_attention_heads;
        let rel = if cfg.use_rel_pos {
            let h = vb.get((2 * side - 1, hd), "rel_pos_h")?;
            let w = vb.get((2 * side - 1, hd), "rel_pos_w")?;
            Some((gather_rel(&h, side)?, gather_rel(&w, side)?))
        } else {
            None
        };
        Ok(Self {
            qkv: Lin::new(d, 3 * d, cfg.qkv_bias, vb.pp("qkv"))?,
            proj: Lin::new(d, d, true, vb.pp("proj"))?,
            heads: cfg.num_attention_heads,
            rel,
        })
    }

    /// Decomposed relative positions for queries `q` (n, h*w, hd): (n, h*w, h*w).
    fn rel_bias(&self, q: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (rh, rw) = self.rel.as_ref().expect("rel tables");
        let (n, _, hd) = q.dims3()?;
        let r = q.reshape((n, h, w, hd))?;
        // einsum("bhwc,hkc->bhwk"): per query row y, (n*w, hd) @ (hd, h).
        let by_row = r.permute((1, 0, 2, 3))?.contiguous()?.reshape((h, n * w, hd))?;
        let rel_h = by_row.matmul(&rh.transpose(1, 2)?.contiguous()?)?.reshape((h, n, w, h))?.permute((1, 0, 2, 3))?;
        // einsum("bhwc,wkc->bhwk"): per query column x, (n*h, hd) @ (hd, w).
        let by_col = r.permute((2, 0, 1, 3))?.contiguous()?.reshape((w, n * h, hd))?;
        let rel_w = by_col.matmul(&rw.transpose(1, 2)?.contiguous()?)?.reshape((w, n, h, w))?.permute((1, 2, 0, 3))?;
        let bias = rel_h.unsqueeze(4)?.broadcast_add(&rel_w.unsqueeze(3)?)?;
        bias.reshape((n, h * w, h * w))
    }

    /// x (B, h, w, D) -> (B, h, w, D).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, d) = x.dims4()?;
        let (t, heads) = (h * w, self.heads);
        let hd = d / heads;
        let qkv = self.qkv.forward(x)?.reshape((b, t, 3, heads, hd))?.permute((2, 0, 3, 1, 4))?;
        let qkv = qkv.contiguous()?.reshape((3, b * heads, t, hd))?;
        let (q, k, v) = (qkv.i(0)?, qkv.i(1)?, qkv.i(2)?);
        let scale = (hd as f64).powf(-0.5);
        let n = b * heads;
        let chunk = (CHUNK_ELEMENTS / (t * t)).clamp(1, n);
        let mut outs = Vec::with_capacity(n.div_ceil(chunk));
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            let qc = q.narrow(0, start, len)?;
            let kc = k.narrow(0, start, len)?;
            let mut scores = (&qc * scale)?.matmul(&kc.t()?)?;
            if self.rel.is_some() {
                scores = (scores + self.rel_bias(&qc, (h, w))?)?;
            }
            outs.push(softmax_last(&scores)?.matmul(&v.narrow(0, start, len)?)?);
        }
        let out = Tensor::cat(&outs, 0)?.reshape((b, heads, h, w, hd))?.permute((0, 2, 3, 1, 4))?;
        self.proj.forward(&out.contiguous()?.reshape((b, h, w, d))?)
    }
}

/// Non-overlapping `ws` windows of x (B, H, W, C), zero-padded: (B * nh * nw, ws, ws, C).
fn window_partition(x: &Tensor, ws: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, h, w, c) = x.dims4()?;
    let (ph, pw) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
    let x = if ph > 0 { x.pad_with_zeros(1, 0, ph)? } else { x.clone() };
    let x = if pw > 0 { x.pad_with_zeros(2, 0, pw)? } else { x };
    let (hp, wp) = (h + ph, w + pw);
    let win = x.reshape((b, hp / ws, ws, wp / ws, ws, c))?.permute((0, 1, 3, 2, 4, 5))?;
    Ok((win.contiguous()?.reshape((b * (hp / ws) * (wp / ws), ws, ws, c))?, (hp, wp)))
}

/// The inverse of `window_partition`, padding dropped: (B, h, w, C).
fn window_unpartition(win: &Tensor, ws: usize, (hp, wp): (usize, usize), (h, w): (usize, usize)) -> Result<Tensor> {
    let c = win.dim(3)?;
    let b = win.dim(0)? / ((hp / ws) * (wp / ws));
    let x = win.reshape((b, hp / ws, wp / ws, ws, ws, c))?.permute((0, 1, 3, 2, 4, 5))?;
    let x = x.contiguous()?.reshape((b, hp, wp, c))?;
    x.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()
}

#[derive(Debug, Clone)]
struct Layer {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    lin1: Lin,
    lin2: Lin,
    act: SamActivation,
    window: usize,
}

impl Layer {
    fn new(cfg: &SamVisionConfig, i: usize, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let window = cfg.window_of(i);
        let side = if window > 0 { window } else { cfg.grid() };
        Ok(Self {
            norm1: LayerNorm::new(d, eps, vb.pp("layer_norm1"))?,
            attn: Attention::new(cfg, side, vb.pp("attn"))?,
            norm2: LayerNorm::new(d, eps, vb.pp("layer_norm2"))?,
            lin1: Lin::new(d, cfg.mlp_dim, true, vb.pp("mlp.lin1"))?,
            lin2: Lin::new(cfg.mlp_dim, d, true, vb.pp("mlp.lin2"))?,
            act: cfg.hidden_act,
            window,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, h, w, _) = x.dims4()?;
        let y = self.norm1.forward(x)?;
        let y = if self.window > 0 {
            let (win, padded) = window_partition(&y, self.window)?;
            window_unpartition(&self.attn.forward(&win)?, self.window, padded, (h, w))?
        } else {
            self.attn.forward(&y)?
        };
        let x = (x + y)?;
        let m = self.lin2.forward(&self.act.apply(&self.lin1.forward(&self.norm2.forward(&x)?)?)?)?;
        x + m
    }
}

#[derive(Debug, Clone)]
pub struct ImageEncoder {
    patch_embed: Conv2d,
    pos_embed: Option<Tensor>,
    layers: Vec<Layer>,
    neck_conv1: Tensor,
    neck_norm1: LayerNorm,
    neck_conv2: Tensor,
    neck_norm2: LayerNorm,
    image_size: usize,
}

impl ImageEncoder {
    /// `vb` at `vision_encoder`.
    pub fn new(cfg: &SamVisionConfig, vb: VarBuilder) -> Result<Self> {
        let (d, p, g, out) = (cfg.hidden_size, cfg.patch_size, cfg.grid(), cfg.output_channels);
        let pos_embed = if cfg.use_abs_pos { Some(vb.get((1, g, g, d), "pos_embed")?) } else { None };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, i, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let neck = vb.pp("neck");
        Ok(Self {
            patch_embed: Conv2d::new(3, d, p, p, 0, vb.pp("patch_embed.projection"))?,
            pos_embed,
            layers,
            neck_conv1: neck.get((out, d, 1, 1), "conv1.weight")?,
            // SamLayerNorm's own default eps, not the config's.
            neck_norm1: LayerNorm::new(out, 1e-6, neck.pp("layer_norm1"))?,
            neck_conv2: neck.get((out, out, 3, 3), "conv2.weight")?,
            neck_norm2: LayerNorm::new(out, 1e-6, neck.pp("layer_norm2"))?,
            image_size: cfg.image_size,
        })
    }

    /// Pixels (B, 3, S, S) at the configured size -> image embeddings (B, output_channels, g, g).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let s = self.image_size;
        match pixels.dims() {
            &[_, 3, h, w] if (h, w) == (s, s) => {}
            d => {
                return Err(Error::Msg(format!(
                    "pixel values have shape {d:?}; the SAM image encoder reads (B, 3, {s}, {s}) \
                     (preprocess the image with SamProcessor)"
                )))
            }
        }
        let mut x = self.patch_embed.forward(pixels)?.permute((0, 2, 3, 1))?;
        if let Some(p) = &self.pos_embed {
            x = x.broadcast_add(p)?;
        }
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let x = x.permute((0, 3, 1, 2))?.contiguous()?;
        let x = layer_norm_nchw(&self.neck_norm1, &x.conv2d(&self.neck_conv1, 0, 1, 1, 1)?)?;
        layer_norm_nchw(&self.neck_norm2, &x.contiguous()?.conv2d(&self.neck_conv2, 1, 1, 1, 1)?)
    }
}
