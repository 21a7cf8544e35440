//! The image tower shared by Toyland's CLIP stand-ins and oracles: a small ResNet (vstar's own
//! ResnetBlock, GroupNorm and conv layers) pooled to one vector.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use vstar_nn::layers::group_norm::GroupNorm;
use vstar_nn::models::conv2d;
use vstar_nn::models::resnet::{Downsample, ResnetBlock};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TowerConfig {
    /// Channels per resolution level; each level but the last halves the resolution.
    pub channels: Vec<usize>,
    pub embed_dim: usize,
    pub groups: usize,
    /// Stride of the first conv: 2 halves the input at once (the towers then work at 16x16,
    /// 4x cheaper; with 1 the identity oracle's embedding collapsed, see oracle_stage.rs).
    #[serde(default = "one")]
    pub stem_stride: usize,
}

fn one() -> usize {
    1
}

pub struct ImageTower {
    conv_in: vstar_nn::layers::conv::Conv2d,
    levels: Vec<(ResnetBlock, Option<Downsample>)>,
    norm_out: GroupNorm,
    proj: candle_nn::Linear,
}

impl ImageTower {
    pub fn new(c: &TowerConfig, vb: VarBuilder) -> Result<Self> {
        let conv_in = conv2d(3, c.channels[0], 3, c.stem_stride, 1, vb.pp("conv_in"))?;
        let mut levels = vec![];
        // The towers take no adapters: this registry is never handed out.
        let slots = &vstar_nn::layers::Slots::default();
        let mut cin = c.channels[0];
        for (i, &ch) in c.channels.iter().enumerate() {
            let vbl = vb.pp(format!("levels.{i}"));
            let block = ResnetBlock::new(cin, ch, None, c.groups, 1e-6, vbl.pp("resnet"), slots)?;
            let down = (i + 1 < c.channels.len()).then(|| Downsample::new(ch, 1, vbl.pp("down"), slots)).transpose()?;
            levels.push((block, down));
            cin = ch;
        }
        let norm_out = GroupNorm::new(c.groups, cin, 1e-6, vb.pp("norm_out"))?;
        let proj = candle_nn::linear(cin, c.embed_dim, vb.pp("proj"))?;
        Ok(Self { conv_in, levels, norm_out, proj })
    }

    /// (B, 3, H, W) in [-1, 1] -> (B, embed_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for (block, down) in &self.levels {
            h = block.forward(&h, None, None)?;
            if let Some(d) = down {
                h = d.forward(&h, None)?;
            }
        }
        let pooled = self.norm_out.forward(&h)?.silu()?.mean((2, 3))?;
        self.proj.forward(&pooled)
    }
}
