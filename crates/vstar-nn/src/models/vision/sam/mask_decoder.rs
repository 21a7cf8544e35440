//! SAM's mask decoder (transformers' `SamMaskDecoder`): output tokens (IoU token, one per
//! mask) and the sparse prompt go through a two-way transformer with the image embeddings
//! (tokens attend to the image and the image to the tokens), the image side is upscaled 4x
//! by two 2x2 stride-2 transposed convolutions, and each mask token's hypernetwork MLP turns
//! it into a per-pixel linear classifier; an MLP on the IoU token predicts each mask's quality.

use super::config::{SamActivation, SamDecoderConfig};
use super::image_encoder::layer_norm_nchw;
use super::Lin;
use crate::layers::ops::{softmax_last, LayerNorm};
use candle_core::{IndexOp, Result, Tensor};
use candle_nn::VarBuilder;

/// `SamAttention`: projections to `internal = D / downsample`, heads, back to D.
#[derive(Debug, Clone)]
struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    out: Lin,
    heads: usize,
}

impl Attention {
    fn new(cfg: &SamDecoderConfig, downsample: usize, vb: VarBuilder) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.hidden_size / downsample);
        Ok(Self {
            q: Lin::new(d, i, true, vb.pp("q_proj"))?,
            k: Lin::new(d, i, true, vb.pp("k_proj"))?,
            v: Lin::new(d, i, true, vb.pp("v_proj"))?,
            out: Lin::new(i, d, true, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
        })
    }

    /// (B, Nq, D), (B, Nk, D), (B, Nk, D) -> (B, Nq, D).
    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let split = |x: Tensor| -> Result<Tensor> {
            let (b, n, i) = x.dims3()?;
            x.reshape((b, n, self.heads, i / self.heads))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.q.forward(q)?)?;
        let k = split(self.k.forward(k)?)?;
        let v = split(self.v.forward(v)?)?;
        let (b, h, nq, hd) = q.dims4()?;
        let scores = (q.matmul(&k.t()?)? * (hd as f64).powf(-0.5))?;
        let o = softmax_last(&scores)?.matmul(&v)?;
        self.out.forward(&o.transpose(1, 2)?.contiguous()?.reshape((b, nq, h * hd))?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    self_attn: Attention,
    norm1: LayerNorm,
    token_to_image: Attention,
    norm2: LayerNorm,
    lin1: Lin,
    lin2: Lin,
    act: SamActivation,
    norm3: LayerNorm,
    norm4: LayerNorm,
    image_to_token: Attention,
    skip_first_pe: bool,
}

impl Block {
    fn new(cfg: &SamDecoderConfig, skip_first_pe: bool, vb: VarBuilder) -> Result<Self> {
        let (d, eps, down) = (cfg.hidden_size, cfg.layer_norm_eps, cfg.attention_downsample_rate);
        Ok(Self {
            self_attn: Attention::new(cfg, 1, vb.pp("self_attn"))?,
            norm1: LayerNorm::new(d, eps, vb.pp("layer_norm1"))?,
            token_to_image: Attention::new(cfg, down, vb.pp("cross_attn_token_to_image"))?,
            norm2: LayerNorm::new(d, eps, vb.pp("layer_norm2"))?,
            lin1: Lin::new(d, cfg.mlp_dim, true, vb.pp("mlp.lin1"))?,
            lin2: Lin::new(cfg.mlp_dim, d, true, vb.pp("mlp.lin2"))?,
            act: cfg.hidden_act,
            norm3: LayerNorm::new(d, eps, vb.pp("layer_norm3"))?,
            norm4: LayerNorm::new(d, eps, vb.pp("layer_norm4"))?,
            image_to_token: Attention::new(cfg, down, vb.pp("cross_attn_image_to_token"))?,
            skip_first_pe,
        })
    }

    /// queries (B, T, D) with their positional embedding `qpe`, keys (B, N, D) with `kpe`.
    fn forward(&self, queries: &Tensor, keys: &Tensor, qpe: &Tensor, kpe: &Tensor) -> Result<(Tensor, Tensor)> {
        let queries = if self.skip_first_pe {
            self.self_attn.forward(queries, queries, queries)?
        } else {
            let q = (queries + qpe)?;
            (queries + self.self_attn.forward(&q, &q, queries)?)?
        };
        let queries = self.norm1.forward(&queries)?;
        let (q, k) = ((&queries + qpe)?, (keys + kpe)?);
        let queries = self.norm2.forward(&(&queries + self.token_to_image.forward(&q, &k, keys)?)?)?;
        let mlp = self.lin2.forward(&self.act.apply(&self.lin1.forward(&queries)?)?)?;
        let queries = self.norm3.forward(&(&queries + mlp)?)?;
        let (q, k) = ((&queries + qpe)?, (keys + kpe)?);
        let keys = self.norm4.forward(&(keys + self.image_to_token.forward(&k, &q, &queries)?)?)?;
        Ok((queries, keys))
    }
}

/// `SamFeedForward`: proj_in, (depth - 2) hidden layers, proj_out, ReLU between.
#[derive(Debug, Clone)]
struct FeedForward {
    layers: Vec<Lin>,
}

impl FeedForward {
    fn new(input: usize, hidden: usize, output: usize, depth: usize, vb: VarBuilder) -> Result<Self> {
        let mut layers = vec![Lin::new(input, hidden, true, vb.pp("proj_in"))?];
        for i in 0..depth.saturating_sub(2) {
            layers.push(Lin::new(hidden, hidden, true, vb.pp(format!("layers.{i}")))?);
        }
        layers.push(Lin::new(hidden, output, true, vb.pp("proj_out"))?);
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().try_fold(x.clone(), |h, (i, l)| {
            let h = l.forward(&h)?;
            if i < last {
                h.relu()
            } else {
                Ok(h)
            }
        })
    }
}

/// A 2x2 stride-2 transposed convolution (weight (Cin, Cout, 2, 2)) as one matmul.
#[derive(Debug, Clone)]
struct Upscale {
    weight: Tensor,
    bias: Tensor,
}

impl Upscale {
    fn new(cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((cin, cout, 2, 2), "weight")?.reshape((cin, cout * 4))?;
        Ok(Self { weight, bias: vb.get(cout, "bias")?.reshape((1, cout, 1, 1))? })
    }

    /// (B, Cin, H, W) -> (B, Cout, 2H, 2W).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, cin, h, w) = x.dims4()?;
        let cout = self.weight.dim(1)? / 4;
        let y = x.permute((0, 2, 3, 1))?.contiguous()?.reshape((b * h * w, cin))?.matmul(&self.weight)?;
        // y[b, i, j, o, a, c] lands at output (o, 2i + a, 2j + c).
        let y = y.reshape((b, h, w, cout, 2, 2))?.permute((0, 3, 1, 4, 2, 5))?;
        y.contiguous()?.reshape((b, cout, 2 * h, 2 * w))?.broadcast_add(&self.bias)
    }
}

#[derive(Debug, Clone)]
pub struct MaskDecoder {
    output_tokens: Tensor,
    layers: Vec<Block>,
    final_attn: Attention,
    final_norm: LayerNorm,
    upscale1: Upscale,
    upscale_norm: LayerNorm,
    upscale2: Upscale,
    hypernetworks: Vec<FeedForward>,
    iou_head: FeedForward,
    num_mask_tokens: usize,
}

impl MaskDecoder {
    /// `vb` at `mask_decoder`.
    pub fn new(cfg: &SamDecoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let m = cfg.num_multimask_outputs + 1;
        let output_tokens =
            Tensor::cat(&[vb.get((1, d), "iou_token.weight")?, vb.get((m, d), "mask_tokens.weight")?], 0)?;
        let t = vb.pp("transformer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(cfg, i == 0, t.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let hypernetworks = (0..m)
            .map(|i| FeedForward::new(d, d, d / 8, 3, vb.pp(format!("output_hypernetworks_mlps.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            output_tokens,
            layers,
            final_attn: Attention::new(cfg, cfg.attention_downsample_rate, t.pp("final_attn_token_to_image"))?,
            // nn.LayerNorm's default eps, not the config's.
            final_norm: LayerNorm::new(d, 1e-5, t.pp("layer_norm_final_attn"))?,
            upscale1: Upscale::new(d, d / 4, vb.pp("upscale_conv1"))?,
            upscale_norm: LayerNorm::new(d / 4, 1e-6, vb.pp("upscale_layer_norm"))?,
            upscale2: Upscale::new(d / 4, d / 8, vb.pp("upscale_conv2"))?,
            hypernetworks,
            iou_head: FeedForward::new(
                d,
                cfg.iou_head_hidden_dim,
                m,
                cfg.iou_head_depth,
                vb.pp("iou_prediction_head"),
            )?,
            num_mask_tokens: m,
        })
    }

    /// One image's embeddings (1, D, g, g) and their positional embedding, a sparse prompt
    /// (N, D) and the dense one (1, D, g, g) -> low-res mask logits (1, K, 4g, 4g) and IoU
    /// predictions (1, K): K = the multimask outputs, or the single-mask output alone.
    pub fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
        multimask: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (_, d, g, _) = image.dims4()?;
        let tokens = Tensor::cat(&[&self.output_tokens, sparse], 0)?.unsqueeze(0)?; // (1, T, D)
        let keys = (image + dense)?.flatten_from(2)?.transpose(1, 2)?.contiguous()?; // (1, g*g, D)
        let kpe = image_pe.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let (mut queries, mut keys) = (tokens.clone(), keys);
        for layer in &self.layers {
            (queries, keys) = layer.forward(&queries, &keys, &tokens, &kpe)?;
        }
        let (q, k) = ((&queries + &tokens)?, (&keys + &kpe)?);
        let queries = self.final_norm.forward(&(&queries + self.final_attn.forward(&q, &k, &keys)?)?)?;

        let m = self.num_mask_tokens;
        let image = keys.transpose(1, 2)?.contiguous()?.reshape((1, d, g, g))?;
        let up = self.upscale1.forward(&image)?;
        let up = layer_norm_nchw(&self.upscale_norm, &up)?.gelu_erf()?;
        let up = self.upscale2.forward(&up)?.gelu_erf()?; // (1, D/8, 4g, 4g)
        let (_, c, uh, uw) = up.dims4()?;
        let hyper =
            (0..m).map(|i| self.hypernetworks[i].forward(&queries.i((.., 1 + i))?)).collect::<Result<Vec<_>>>()?;
        let hyper = Tensor::stack(&hyper, 1)?; // (1, M, D/8)
        let masks = hyper.matmul(&up.reshape((1, c, uh * uw))?)?.reshape((1, m, uh, uw))?;
        let iou = self.iou_head.forward(&queries.i((.., 0))?)?; // (1, M)
        let (start, len) = if multimask { (1, m - 1) } else { (0, 1) };
        Ok((masks.narrow(1, start, len)?.contiguous()?, iou.narrow(1, start, len)?.contiguous()?))
    }
}
