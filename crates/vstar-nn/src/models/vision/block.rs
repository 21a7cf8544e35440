//! The pre-norm transformer block all three encoders are made of:
//! `x += s1 * attn(norm1(x))`, then `x += s2 * mlp(norm2(x))`, where s is DINOv2's learned
//! layer scale (1 elsewhere). Only the parameter names differ per family; `Names` maps them.

use super::config::{Activation, Family, TowerConfig};
use crate::layers::ops::{quick_gelu, LayerNorm};
use crate::layers::self_attention::SelfAttention;
use crate::layers::{AdaptedLinear, Slots};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Where one family keeps each block parameter, as its checkpoints on the hub name them.
struct Names {
    layers: &'static str,
    norm1: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    out: &'static str,
    norm2: &'static str,
    fc1: &'static str,
    fc2: &'static str,
    layer_scale: Option<(&'static str, &'static str)>,
}

const CLIP: Names = Names {
    layers: "encoder.layers",
    norm1: "layer_norm1",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    out: "self_attn.out_proj",
    norm2: "layer_norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
    layer_scale: None,
};

// transformers 5 renames these modules in memory but saves (and the hub holds) these names.
const VIT: Names = Names {
    layers: "encoder.layer",
    norm1: "layernorm_before",
    q: "attention.attention.query",
    k: "attention.attention.key",
    v: "attention.attention.value",
    out: "attention.output.dense",
    norm2: "layernorm_after",
    fc1: "intermediate.dense",
    fc2: "output.dense",
    layer_scale: None,
};

const DINOV2: Names = Names {
    norm1: "norm1",
    norm2: "norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
    layer_scale: Some(("layer_scale1.lambda1", "layer_scale2.lambda1")),
    ..VIT
};

#[derive(Debug, Clone)]
pub(super) struct Block {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    fc1: AdaptedLinear,
    fc2: AdaptedLinear,
    act: Activation,
    layer_scale: Option<(Tensor, Tensor)>,
}

impl Block {
    fn new(cfg: &TowerConfig, names: &Names, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        let (d, m) = (cfg.hidden_size, cfg.intermediate_size);
        let eps = cfg.layer_norm_eps;
        let lin = |i, o, bias, name: &str| AdaptedLinear::new(i, o, bias, vb.pp(name), slots);
        let layer_scale = match names.layer_scale {
            Some((s1, s2)) => Some((vb.get(d, s1)?, vb.get(d, s2)?)),
            None => None,
        };
        Ok(Self {
            norm1: LayerNorm::new(d, eps, vb.pp(names.norm1))?,
            attn: SelfAttention {
                q: lin(d, d, cfg.qkv_bias, names.q)?,
                k: lin(d, d, cfg.qkv_bias, names.k)?,
                v: lin(d, d, cfg.qkv_bias, names.v)?,
                out: lin(d, d, true, names.out)?,
                heads: cfg.num_attention_heads,
            },
            norm2: LayerNorm::new(d, eps, vb.pp(names.norm2))?,
            fc1: lin(d, m, true, names.fc1)?,
            fc2: lin(m, d, true, names.fc2)?,
            act: cfg.hidden_act,
            layer_scale,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let scaled = |h: Tensor, s: Option<&Tensor>| match s {
            Some(s) => h.broadcast_mul(s),
            None => Ok(h),
        };
        let (s1, s2) = match &self.layer_scale {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        let x = (x + scaled(self.attn.forward(&self.norm1.forward(x)?, None, None)?, s1)?)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?, None)?;
        let h = match self.act {
            Activation::QuickGelu => quick_gelu(&h)?,
            Activation::Gelu => h.gelu_erf()?,
        };
        &x + scaled(self.fc2.forward(&h, None)?, s2)?
    }
}

/// The encoder's blocks, read from `vb` (the tower's root) under the family's names.
#[derive(Debug, Clone)]
pub(super) struct Encoder(Vec<Block>);

impl Encoder {
    pub(super) fn new(family: Family, cfg: &TowerConfig, vb: &VarBuilder) -> Result<Self> {
        let names = match family {
            Family::Clip => &CLIP,
            Family::Vit => &VIT,
            Family::Dinov2 => &DINOV2,
        };
        // Inference only: the slots are never handed out, so no adapter can attach.
        let slots = Slots::default();
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(cfg, names, vb.pp(format!("{}.{i}", names.layers)), &slots))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self(blocks))
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.iter().try_fold(x.clone(), |h, b| b.forward(&h))
    }
}
