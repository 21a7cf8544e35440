//! Component configs, read from the `config.json` that diffusers / transformers write.
//!
//! Defaults follow diffusers' and transformers' constructors so any diffusers-layout folder
//! works; keys without a safe default (the shapes) are required. Features vstar does not
//! implement are refused by name instead of being silently ignored.

use candle_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A config value that may be given once for all blocks or once per block.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    pub fn expand(&self, n: usize, key: &str) -> Result<Vec<T>> {
        match self {
            PerBlock::One(v) => Ok(vec![v.clone(); n]),
            PerBlock::Many(v) if v.len() == n => Ok(v.clone()),
            PerBlock::Many(v) => {
                Err(Error::Msg(format!("config key `{key}` has {} entries but the model has {n} blocks", v.len())))
            }
        }
    }
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Msg(format!("{}: cannot read config ({e}); is this a diffusers-layout folder?", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Msg(format!("{}: {e}", path.display())))
}

fn unsupported(path: &str, key: &str, value: impl std::fmt::Debug) -> Error {
    Error::Msg(format!("{path}: config key `{key}` = {value:?} is not supported by vstar"))
}

fn d_true() -> bool {
    true
}
fn d_4() -> usize {
    4
}
fn d_3() -> usize {
    3
}
fn d_1() -> usize {
    1
}
fn d_64() -> usize {
    64
}
fn d_32() -> usize {
    32
}
fn d_eps5() -> f64 {
    1e-5
}
fn d_one_f() -> f64 {
    1.0
}
fn d_heads8() -> PerBlock<usize> {
    PerBlock::One(8)
}
fn d_layers2() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn d_layers1() -> PerBlock<usize> {
    PerBlock::One(1)
}
fn d_silu() -> String {
    "silu".into()
}
fn d_default() -> String {
    "default".into()
}
fn d_positional() -> String {
    "positional".into()
}
fn d_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

/// `unet/config.json` (diffusers `UNet2DConditionModel`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UNetConfig {
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default = "d_4")]
    pub in_channels: usize,
    #[serde(default = "d_4")]
    pub out_channels: usize,
    #[serde(default = "d_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "d_mid")]
    pub mid_block_type: Option<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_layers2")]
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "d_1")]
    pub downsample_padding: usize,
    #[serde(default = "d_one_f")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "d_silu")]
    pub act_fn: String,
    #[serde(default = "d_32")]
    pub norm_num_groups: usize,
    #[serde(default = "d_eps5")]
    pub norm_eps: f64,
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default = "d_layers1")]
    pub transformer_layers_per_block: PerBlock<usize>,
    #[serde(default = "d_heads8")]
    pub attention_head_dim: PerBlock<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default)]
    pub only_cross_attention: PerBlockBool,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// Heads of the `text` addition embedding's attention pooling (diffusers' default 64).
    #[serde(default = "d_64")]
    pub addition_embed_type_num_heads: usize,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default = "d_default")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "d_positional")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default = "d_3")]
    pub conv_in_kernel: usize,
    #[serde(default = "d_3")]
    pub conv_out_kernel: usize,
    #[serde(default = "d_default")]
    pub attention_type: String,
    #[serde(default)]
    pub center_input_sample: bool,
}

/// `only_cross_attention` may be a bool or a list of bools; only all-false is supported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(untagged)]
pub enum PerBlockBool {
    #[default]
    False,
    One(bool),
    Many(Vec<bool>),
}

impl PerBlockBool {
    fn any(&self) -> bool {
        match self {
            PerBlockBool::False => false,
            PerBlockBool::One(b) => *b,
            PerBlockBool::Many(v) => v.iter().any(|b| *b),
        }
    }
}

/// What one UNet down block (and its mirrored up block) is made of, resolved from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSpec {
    pub channels: usize,
    pub layers: usize,
    pub cross_attention: bool,
    pub heads: usize,
    pub transformer_layers: usize,
    pub cross_attention_dim: usize,
}

impl UNetConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let c: Self = read_json(path)?;
        c.validate(&path.display().to_string())?;
        Ok(c)
    }

    fn validate(&self, p: &str) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(Error::Msg(format!(
                "{p}: `block_out_channels`, `down_block_types` and `up_block_types` must have the same non-zero length"
            )));
        }
        for t in &self.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return Err(unsupported(p, "down_block_types", t));
            }
        }
        for t in &self.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return Err(unsupported(p, "up_block_types", t));
            }
        }
        match self.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") | None => {}
            Some(t) => return Err(unsupported(p, "mid_block_type", t)),
        }
        if self.class_embed_type.is_some() {
            return Err(unsupported(p, "class_embed_type", &self.class_embed_type));
        }
        match self.addition_embed_type.as_deref() {
            None => {}
            Some("text_time") => {
                if self.addition_time_embed_dim.is_none() || self.projection_class_embeddings_input_dim.is_none() {
                    return Err(Error::Msg(format!(
                        "{p}: `addition_embed_type` text_time needs `addition_time_embed_dim` and `projection_class_embeddings_input_dim`"
                    )));
                }
            }
            Some("text") => {
                let heads = self.addition_embed_type_num_heads;
                if !matches!(self.cross_attention_dim, PerBlock::One(d) if heads > 0 && d % heads == 0) {
                    return Err(Error::Msg(format!(
                        "{p}: `addition_embed_type` text needs one `cross_attention_dim` divisible by \
                         `addition_embed_type_num_heads` ({:?} and {})",
                        self.cross_attention_dim, self.addition_embed_type_num_heads
                    )));
                }
            }
            Some(t) => return Err(unsupported(p, "addition_embed_type", t)),
        }
        if self.only_cross_attention.any() {
            return Err(unsupported(p, "only_cross_attention", true));
        }
        if self.dual_cross_attention {
            return Err(unsupported(p, "dual_cross_attention", true));
        }
        if self.resnet_time_scale_shift != "default" {
            return Err(unsupported(p, "resnet_time_scale_shift", &self.resnet_time_scale_shift));
        }
        if self.time_embedding_type != "positional" {
            return Err(unsupported(p, "time_embedding_type", &self.time_embedding_type));
        }
        if self.time_cond_proj_dim.is_some() {
            return Err(unsupported(p, "time_cond_proj_dim", self.time_cond_proj_dim));
        }
        if self.encoder_hid_dim.is_some() {
            return Err(unsupported(p, "encoder_hid_dim", self.encoder_hid_dim));
        }
        if self.attention_type != "default" {
            return Err(unsupported(p, "attention_type", &self.attention_type));
        }
        if self.act_fn != "silu" {
            return Err(unsupported(p, "act_fn", &self.act_fn));
        }
        if self.mid_block_scale_factor != 1.0 {
            return Err(unsupported(p, "mid_block_scale_factor", self.mid_block_scale_factor));
        }
        if self.center_input_sample {
            return Err(unsupported(p, "center_input_sample", true));
        }
        for (i, spec) in self.blocks()?.iter().enumerate() {
            if spec.channels % self.norm_num_groups != 0 {
                return Err(Error::Msg(format!(
                    "{p}: block {i} has {} channels, not divisible by norm_num_groups {}",
                    spec.channels, self.norm_num_groups
                )));
            }
            if spec.cross_attention && (spec.heads == 0 || spec.channels % spec.heads != 0) {
                return Err(Error::Msg(format!(
                    "{p}: block {i} has {} channels, not divisible by its {} attention heads",
                    spec.channels, spec.heads
                )));
            }
        }
        Ok(())
    }

    /// Per down block: channels, layers, heads, ... (diffusers' "attention_head_dim" is the head
    /// count when `num_attention_heads` is absent - a naming quirk kept for compatibility).
    pub fn blocks(&self) -> Result<Vec<BlockSpec>> {
        let n = self.block_out_channels.len();
        let layers = self.layers_per_block.expand(n, "layers_per_block")?;
        let heads = match &self.num_attention_heads {
            Some(h) => h.expand(n, "num_attention_heads")?,
            None => self.attention_head_dim.expand(n, "attention_head_dim")?,
        };
        let tl = self.transformer_layers_per_block.expand(n, "transformer_layers_per_block")?;
        let cad = self.cross_attention_dim.expand(n, "cross_attention_dim")?;
        Ok((0..n)
            .map(|i| BlockSpec {
                channels: self.block_out_channels[i],
                layers: layers[i],
                cross_attention: self.down_block_types[i] == "CrossAttnDownBlock2D",
                heads: heads[i],
                transformer_layers: tl[i],
                cross_attention_dim: cad[i],
            })
            .collect())
    }

    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim.unwrap_or(self.block_out_channels[0] * 4)
    }
}

fn d_vae_groups() -> usize {
    32
}
fn d_scale() -> f64 {
    0.18215
}
fn d_updec() -> Vec<String> {
    vec!["UpDecoderBlock2D".into()]
}
fn d_downenc() -> Vec<String> {
    vec!["DownEncoderBlock2D".into()]
}

/// `vae/config.json` (diffusers `AutoencoderKL`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "d_3")]
    pub in_channels: usize,
    #[serde(default = "d_3")]
    pub out_channels: usize,
    #[serde(default = "d_downenc")]
    pub down_block_types: Vec<String>,
    #[serde(default = "d_updec")]
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_1")]
    pub layers_per_block: usize,
    #[serde(default = "d_silu")]
    pub act_fn: String,
    pub latent_channels: usize,
    #[serde(default = "d_vae_groups")]
    pub norm_num_groups: usize,
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default = "d_scale")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "d_true")]
    pub use_quant_conv: bool,
    #[serde(default = "d_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "d_true")]
    pub mid_block_add_attention: bool,
    #[serde(default)]
    pub force_upcast: Option<bool>,
}

impl VaeConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let c: Self = read_json(path)?;
        let p = path.display().to_string();
        let n = c.block_out_channels.len();
        if n == 0 {
            return Err(Error::Msg(format!("{p}: `block_out_channels` is empty")));
        }
        // diffusers builds one block per channel entry; the type lists only name the kind.
        if c.down_block_types.iter().any(|t| t != "DownEncoderBlock2D") {
            return Err(unsupported(&p, "down_block_types", &c.down_block_types));
        }
        if c.up_block_types.iter().any(|t| t != "UpDecoderBlock2D") {
            return Err(unsupported(&p, "up_block_types", &c.up_block_types));
        }
        if c.act_fn != "silu" {
            return Err(unsupported(&p, "act_fn", &c.act_fn));
        }
        if let Some(&ch) = c.block_out_channels.iter().find(|&&ch| ch % c.norm_num_groups != 0) {
            return Err(Error::Msg(format!(
                "{p}: {ch} channels are not divisible by norm_num_groups {}",
                c.norm_num_groups
            )));
        }
        Ok(c)
    }

    /// Image side / latent side.
    pub fn downsample_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    /// The shape of the latents of a (B, 3, H, W) image batch.
    pub fn latent_shape(&self, images: &candle_core::Tensor) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (b, _, h, w) = images.dims4()?;
        let f = self.downsample_factor();
        Ok((b, self.latent_channels, h / f, w / f))
    }
}

fn d_quick_gelu() -> String {
    "quick_gelu".into()
}
fn d_77() -> usize {
    77
}
fn d_ln_eps() -> f64 {
    1e-5
}
fn d_eos() -> i64 {
    2
}

/// `text_encoder/config.json` (transformers `CLIPTextConfig`, for CLIPTextModel and
/// CLIPTextModelWithProjection).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "d_77")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "d_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// transformers pools at the first `eos_token_id`; the legacy value 2 means "argmax id".
    #[serde(default = "d_eos")]
    pub eos_token_id: i64,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
}

impl ClipTextConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let c: Self = read_json(path)?;
        let p = path.display().to_string();
        if c.hidden_act != "quick_gelu" && c.hidden_act != "gelu" {
            return Err(unsupported(&p, "hidden_act", &c.hidden_act));
        }
        if c.num_attention_heads == 0 || c.hidden_size % c.num_attention_heads != 0 {
            return Err(Error::Msg(format!(
                "{p}: hidden_size {} is not divisible by num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            )));
        }
        Ok(c)
    }

    /// CLIPTextModelWithProjection (SDXL's second encoder) carries `text_projection`.
    pub fn with_projection(&self) -> bool {
        self.architectures.as_ref().is_some_and(|a| a.iter().any(|s| s == "CLIPTextModelWithProjection"))
    }
}
