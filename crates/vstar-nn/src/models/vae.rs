//! AutoencoderKL: images <-> latents. Encode gives a diagonal Gaussian; the pipeline multiplies
//! latents by `scaling_factor` before diffusion and divides before decoding.

use super::conv2d;
use super::resnet::{Downsample, ResnetBlock, Upsample};
use crate::config::VaeConfig;
use crate::layers::conv::Conv2d;
use crate::layers::fused_attention::fused_attention;
use crate::layers::group_norm::GroupNorm;
use crate::layers::Slots;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

const EPS: f64 = 1e-6;

/// The VAE mid-block's single-head spatial self-attention.
#[derive(Debug, Clone)]
struct SpatialAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialAttention {
    fn new(ch: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            group_norm: GroupNorm::new(groups, ch, EPS, vb.pp("group_norm"))?,
            to_q: candle_nn::linear(ch, ch, vb.pp("to_q"))?,
            to_k: candle_nn::linear(ch, ch, vb.pp("to_k"))?,
            to_v: candle_nn::linear(ch, ch, vb.pp("to_v"))?,
            to_out: candle_nn::linear(ch, ch, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        // contiguous: candle's batched matmul mis-reads this transposed layout for rows >= 1.
        let seq = self.group_norm.forward(x)?.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()?;
        // One head: (B, 1, N, C) for the fused op, which never holds the (N, N) map (at SDXL's
        // 128x128 latents that map is 1 GiB per image).
        let head = |l: &Linear| l.forward(&seq)?.unsqueeze(1);
        let (q, k, v) = (head(&self.to_q)?, head(&self.to_k)?, head(&self.to_v)?);
        let attended = fused_attention(&q, &k, &v, 1.0 / (c as f64).sqrt())?.squeeze(1)?;
        let out = self.to_out.forward(&attended)?;
        out.transpose(1, 2)?.reshape((b, c, h, w))? + x
    }
}

#[derive(Debug, Clone)]
struct MidBlock {
    res0: ResnetBlock,
    attn: Option<SpatialAttention>,
    res1: ResnetBlock,
}

impl MidBlock {
    fn new(ch: usize, groups: usize, attn: bool, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        Ok(Self {
            res0: ResnetBlock::new(ch, ch, None, groups, EPS, vb.pp("resnets.0"), slots)?,
            attn: attn.then(|| SpatialAttention::new(ch, groups, vb.pp("attentions.0"))).transpose()?,
            res1: ResnetBlock::new(ch, ch, None, groups, EPS, vb.pp("resnets.1"), slots)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.res0.forward(x, None, None)?;
        if let Some(a) = &self.attn {
            h = a.forward(&h)?;
        }
        self.res1.forward(&h, None, None)
    }
}

#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    down: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Debug, Clone)]
struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// The encoder's output distribution over latents (unscaled).
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    pub mean: Tensor,
    pub logvar: Tensor,
}

impl DiagonalGaussian {
    /// mean + std * noise; `noise` has the latent shape.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        self.mean.clone() + (self.logvar.clone() * 0.5)?.exp()?.mul(noise)?
    }

    /// KL divergence to N(0, I), mean over elements (the VAE training regulariser).
    pub fn kl(&self) -> Result<Tensor> {
        let var = self.logvar.exp()?;
        ((self.mean.sqr()? + var)? - 1.0 - &self.logvar)?.mean_all()? * 0.5
    }
}

#[derive(Debug, Clone)]
pub struct Vae {
    pub config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl Vae {
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let (g, n, lat) = (cfg.norm_num_groups, ch.len(), cfg.latent_channels);
        let top = ch[n - 1];
        // The VAE takes no adapters: this registry is never handed out.
        let slots = &Slots::default();
        // `count` resnets to `c` channels, the first from `cin`.
        let resnets = |count: usize, cin: usize, c: usize, vbb: &VarBuilder| {
            (0..count)
                .map(|j| {
                    ResnetBlock::new(
                        if j == 0 { cin } else { c },
                        c,
                        None,
                        g,
                        EPS,
                        vbb.pp(format!("resnets.{j}")),
                        slots,
                    )
                })
                .collect::<Result<Vec<_>>>()
        };

        let ve = vb.pp("encoder");
        let mut down = Vec::with_capacity(n);
        let mut cin = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            let vbb = ve.pp(format!("down_blocks.{i}"));
            let resnets = resnets(cfg.layers_per_block, cin, c, &vbb)?;
            let ds = (i + 1 < n).then(|| Downsample::new(c, 0, vbb.pp("downsamplers.0"), slots)).transpose()?;
            down.push((resnets, ds));
            cin = c;
        }
        let encoder = Encoder {
            conv_in: conv2d(cfg.in_channels, ch[0], 3, 1, 1, ve.pp("conv_in"))?,
            down,
            mid: MidBlock::new(top, g, cfg.mid_block_add_attention, ve.pp("mid_block"), slots)?,
            norm_out: GroupNorm::new(g, top, EPS, ve.pp("conv_norm_out"))?,
            conv_out: conv2d(top, 2 * lat, 3, 1, 1, ve.pp("conv_out"))?,
        };

        let vd = vb.pp("decoder");
        let mut up = Vec::with_capacity(n);
        let mut prev = top;
        for (i, &c) in ch.iter().rev().enumerate() {
            let vbb = vd.pp(format!("up_blocks.{i}"));
            let resnets = resnets(cfg.layers_per_block + 1, prev, c, &vbb)?;
            let us = (i + 1 < n).then(|| Upsample::new(c, vbb.pp("upsamplers.0"), slots)).transpose()?;
            up.push((resnets, us));
            prev = c;
        }
        let decoder = Decoder {
            conv_in: conv2d(lat, top, 3, 1, 1, vd.pp("conv_in"))?,
            mid: MidBlock::new(top, g, cfg.mid_block_add_attention, vd.pp("mid_block"), slots)?,
            up,
            norm_out: GroupNorm::new(g, ch[0], EPS, vd.pp("conv_norm_out"))?,
            conv_out: conv2d(ch[0], cfg.out_channels, 3, 1, 1, vd.pp("conv_out"))?,
        };
        Ok(Self {
            config: cfg.clone(),
            encoder,
            decoder,
            quant_conv: cfg
                .use_quant_conv
                .then(|| conv2d(2 * lat, 2 * lat, 1, 1, 0, vb.pp("quant_conv")))
                .transpose()?,
            post_quant_conv: cfg
                .use_post_quant_conv
                .then(|| conv2d(lat, lat, 1, 1, 0, vb.pp("post_quant_conv")))
                .transpose()?,
        })
    }

    /// Images in [-1, 1], (B, 3, H, W) -> the latent distribution (unscaled).
    pub fn encode(&self, x: &Tensor) -> Result<DiagonalGaussian> {
        let e = &self.encoder;
        let mut h = e.conv_in.forward(x)?;
        for (resnets, ds) in &e.down {
            for r in resnets {
                h = r.forward(&h, None, None)?;
            }
            if let Some(ds) = ds {
                h = ds.forward(&h, None)?;
            }
        }
        h = e.mid.forward(&h)?;
        h = e.conv_out.forward(&e.norm_out.forward_silu(&h, None)?)?;
        if let Some(q) = &self.quant_conv {
            h = q.forward(&h)?;
        }
        let lat = self.config.latent_channels;
        let mean = h.narrow(1, 0, lat)?;
        let logvar = h.narrow(1, lat, lat)?.clamp(-30f32, 20f32)?;
        Ok(DiagonalGaussian { mean, logvar })
    }

    /// Unscaled latents -> images in about [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let d = &self.decoder;
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(z)?,
            None => z.clone(),
        };
        let mut h = d.mid.forward(&d.conv_in.forward(&z)?)?;
        for (resnets, us) in &d.up {
            for r in resnets {
                h = r.forward(&h, None, None)?;
            }
            if let Some(us) = us {
                h = us.forward(&h, None, None)?;
            }
        }
        d.conv_out.forward(&d.norm_out.forward_silu(&h, None)?)
    }

    /// Scaled latents (what the UNet sees) from unscaled ones, and back.
    pub fn scale_latents(&self, z: &Tensor) -> Result<Tensor> {
        let shift = self.config.shift_factor.unwrap_or(0.0);
        (z - shift)? * self.config.scaling_factor
    }

    pub fn unscale_latents(&self, z: &Tensor) -> Result<Tensor> {
        (z / self.config.scaling_factor)? + self.config.shift_factor.unwrap_or(0.0)
    }
}
