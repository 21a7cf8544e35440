//! ResnetBlock2D, Downsample2D and Upsample2D (diffusers names), shared by UNet and VAE.

use super::conv2d;
use crate::layers::conv::Conv2d;
use crate::layers::group_norm::GroupNorm;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<candle_nn::Linear>,
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
    ) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::new(groups, cin, eps, vb.pp("norm1"))?,
            conv1: conv2d(cin, cout, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj: temb_dim.map(|d| candle_nn::linear(d, cout, vb.pp("time_emb_proj"))).transpose()?,
            norm2: GroupNorm::new(groups, cout, eps, vb.pp("norm2"))?,
            conv2: conv2d(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut: (cin != cout).then(|| conv2d(cin, cout, 1, 1, 0, vb.pp("conv_shortcut"))).transpose()?,
        })
    }

    /// `temb`: the SiLU-activated time embedding (B, D), computed once per UNet call.
    pub fn forward(&self, x: &Tensor, temb_act: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb_act) {
            h = h.broadcast_add(&proj.forward(t)?.unsqueeze(2)?.unsqueeze(3)?)?;
        }
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(x)?,
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
    pub fn new(ch: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: conv2d(ch, ch, 3, 2, padding, vb.pp("conv"))?, asymmetric: padding == 0 })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.asymmetric {
            let x = x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
            self.conv.forward(&x)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest 2x upsampling then a 3x3 conv (or to an explicit size, for odd skip shapes).
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn new(ch: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: conv2d(ch, ch, 3, 1, 1, vb.pp("conv"))? })
    }

    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (th, tw) = size.unwrap_or((2 * h, 2 * w));
        self.conv.forward(&x.upsample_nearest2d(th, tw)?)
    }
}
