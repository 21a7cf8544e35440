//! ResnetBlock2D, Downsample2D and Upsample2D (diffusers names), shared by UNet and VAE.
//! Their weights register in `slots` (the UNet's adapters reach every conv and norm); the
//! VAE and the Toyland towers pass a registry of their own that no adapter ever sees.
//! `scale` is the per-batch-row adapter strength (see `AdaptedLinear`).

use crate::layers::conv::Conv2d;
use crate::layers::group_norm::GroupNorm;
use crate::layers::upsample::upsample_nearest;
use crate::layers::{AdaptedLinear, Slots};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<AdaptedLinear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// `temb_dim` None for the VAE's blocks, which take no time embedding.
    pub fn new(
        cin: usize,
        cout: usize,
        temb_dim: Option<usize>,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
        slots: &Slots,
    ) -> Result<Self> {
        let conv = |i, o, k, p, name: &str| Conv2d::adapted(i, o, k, 1, p, vb.pp(name), slots);
        Ok(Self {
            norm1: GroupNorm::adapted(groups, cin, eps, vb.pp("norm1"), slots)?,
            conv1: conv(cin, cout, 3, 1, "conv1")?,
            time_emb_proj: temb_dim
                .map(|d| AdaptedLinear::new(d, cout, true, vb.pp("time_emb_proj"), slots))
                .transpose()?,
            norm2: GroupNorm::adapted(groups, cout, eps, vb.pp("norm2"), slots)?,
            conv2: conv(cout, cout, 3, 1, "conv2")?,
            conv_shortcut: (cin != cout).then(|| conv(cin, cout, 1, 0, "conv_shortcut")).transpose()?,
        })
    }

    /// `temb`: the SiLU-activated time embedding (B, D), computed once per UNet call.
    pub fn forward(&self, x: &Tensor, temb_act: Option<&Tensor>, scale: Option<&Tensor>) -> Result<Tensor> {
        let h = self.norm1.forward_silu(x, scale)?;
        let mut h = self.conv1.forward_scaled(&h, scale)?;
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb_act) {
            let e = proj.forward(t, scale)?;
            // Trained (pretraining, full fine-tuning): candle's broadcast-add gradient is a slow
            // strided sum; the custom op's is one pass.
            h = if e.track_op() {
                crate::layers::bias::add_item_bias(&h, &e, 1)?
            } else {
                h.broadcast_add(&e.unsqueeze(2)?.unsqueeze(3)?)?
            };
        }
        let h = self.conv2.forward_scaled(&self.norm2.forward_silu(&h, scale)?, scale)?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward_scaled(x, scale)?,
            None => x.clone(),
        };
        skip + h
    }
}

/// Stride-2 conv. The VAE's version (padding 0) pads right/bottom by one first, as diffusers does.
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: Conv2d,
    asymmetric: bool,
}

impl Downsample {
    pub fn new(ch: usize, padding: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        Ok(Self { conv: Conv2d::adapted(ch, ch, 3, 2, padding, vb.pp("conv"), slots)?, asymmetric: padding == 0 })
    }

    pub fn forward(&self, x: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        if self.asymmetric {
            let x = x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
            self.conv.forward_scaled(&x, scale)
        } else {
            self.conv.forward_scaled(x, scale)
        }
    }
}

/// Nearest 2x upsampling then a 3x3 conv (or to an explicit size, for odd skip shapes).
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn new(ch: usize, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        Ok(Self { conv: Conv2d::adapted(ch, ch, 3, 1, 1, vb.pp("conv"), slots)? })
    }

    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>, scale: Option<&Tensor>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (th, tw) = size.unwrap_or((2 * h, 2 * w));
        self.conv.forward_scaled(&upsample_nearest(x, th, tw)?, scale)
    }
}
