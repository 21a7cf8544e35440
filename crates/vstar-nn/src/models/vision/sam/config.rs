//! The config.json transformers' `SamModel.save_pretrained` writes (`vision_config`,
//! `prompt_encoder_config`, `mask_decoder_config`), and the image processor's
//! preprocessor_config.json (or the `image_processor` section of processor_config.json).
//! Absent keys take transformers' class defaults (facebook/sam-vit-huge's); values vstar
//! does not implement are refused by key and file.

use crate::models::vision::keys::{read_object, Keys};
use candle_core::{Error, Result};
use serde_json::Value;
use std::path::Path;

const VISION_DEFAULTS: &str = r#"{"hidden_size": 768, "output_channels": 256, "num_hidden_layers": 12,
    "num_attention_heads": 12, "num_channels": 3, "image_size": 1024, "patch_size": 16, "hidden_act": "gelu",
    "layer_norm_eps": 1e-6, "qkv_bias": true, "mlp_ratio": 4.0, "use_abs_pos": true, "use_rel_pos": true,
    "window_size": 14, "global_attn_indexes": [2, 5, 8, 11], "num_pos_feats": 128, "mlp_dim": null}"#;
const PROMPT_DEFAULTS: &str = r#"{"hidden_size": 256, "image_size": 1024, "patch_size": 16,
    "mask_input_channels": 16, "num_point_embeddings": 4, "hidden_act": "gelu", "layer_norm_eps": 1e-6}"#;
const DECODER_DEFAULTS: &str = r#"{"hidden_size": 256, "hidden_act": "relu", "mlp_dim": 2048,
    "num_hidden_layers": 2, "num_attention_heads": 8, "attention_downsample_rate": 2, "num_multimask_outputs": 3,
    "iou_head_depth": 3, "iou_head_hidden_dim": 256, "layer_norm_eps": 1e-6}"#;
const PROCESSOR_DEFAULTS: &str = r#"{"do_resize": true, "do_rescale": true, "do_normalize": true, "do_pad": true,
    "rescale_factor": 0.00392156862745098, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    "resample": 2}"#;

/// The MLP activation of a tower (transformers' `hidden_act`; "gelu" is the exact erf form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamActivation {
    Gelu,
    Relu,
}

impl SamActivation {
    fn read(k: &Keys) -> Result<Self> {
        match k.str("hidden_act")? {
            "gelu" => Ok(Self::Gelu),
            "relu" => Ok(Self::Relu),
            _ => Err(k.refuse("hidden_act", "vstar implements gelu and relu for SAM")),
        }
    }

    pub(super) fn apply(self, x: &candle_core::Tensor) -> Result<candle_core::Tensor> {
        match self {
            Self::Gelu => x.gelu_erf(),
            Self::Relu => x.relu(),
        }
    }
}

/// The ViT image encoder (`vision_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct SamVisionConfig {
    pub hidden_size: usize,
    pub output_channels: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: SamActivation,
    pub layer_norm_eps: f64,
    pub qkv_bias: bool,
    pub mlp_dim: usize,
    pub use_abs_pos: bool,
    pub use_rel_pos: bool,
    /// Side of the attention windows; layers in `global_attn_indexes` attend globally.
    pub window_size: usize,
    pub global_attn_indexes: Vec<usize>,
    /// Rows of the random Fourier matrix shared by the prompt encoder (output 2x this).
    pub num_pos_feats: usize,
}

impl SamVisionConfig {
    /// Side of the patch grid (and of the image embeddings).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// The window side of layer `i`, 0 for a global-attention layer.
    pub fn window_of(&self, i: usize) -> usize {
        if self.global_attn_indexes.contains(&i) {
            0
        } else {
            self.window_size
        }
    }
}

/// The prompt encoder (`prompt_encoder_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct SamPromptConfig {
    pub hidden_size: usize,
    /// Point and box coordinates are divided by this (the model's input side).
    pub image_size: usize,
    pub patch_size: usize,
    pub num_point_embeddings: usize,
}

/// The two-way transformer mask decoder (`mask_decoder_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct SamDecoderConfig {
    pub hidden_size: usize,
    pub hidden_act: SamActivation,
    pub mlp_dim: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub attention_downsample_rate: usize,
    pub num_multimask_outputs: usize,
    pub iou_head_depth: usize,
    pub iou_head_hidden_dim: usize,
    pub layer_norm_eps: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamConfig {
    pub vision: SamVisionConfig,
    pub prompt: SamPromptConfig,
    pub decoder: SamDecoderConfig,
}

fn section<'a>(root: &'a Value, name: &str) -> &'a Value {
    root.get(name).unwrap_or(&Value::Null)
}

fn int_size(k: &Keys, key: &str) -> Result<usize> {
    k.usize(key).map_err(|_| k.refuse(key, "vstar reads square SAM inputs: give one integer"))
}

fn nonzero(k: &Keys, key: &str) -> Result<usize> {
    match k.usize(key)? {
        0 => Err(k.refuse(key, "must be at least 1")),
        n => Ok(n),
    }
}

fn divides(k: &Keys, key: &str, heads: usize, width: usize) -> Result<()> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(k.refuse(key, &format!("the attention width {width} is not divisible by it")));
    }
    Ok(())
}

impl SamConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let root = read_object(
            path,
            "a SAM folder needs the config.json transformers' SamModel.save_pretrained writes \
             (facebook/sam-vit-base's layout)",
        )?;
        let top = Keys::new("{}", &root, path, "")?;
        match root.get("model_type").and_then(Value::as_str) {
            Some("sam") => {}
            other => {
                let found = other.map(|t| format!("model_type {t:?}")).unwrap_or_else(|| "no `model_type`".into());
                return Err(Error::Msg(format!(
                    "{}: {found}, not a SAM checkpoint (expected the config.json of a transformers SamModel, \
                     model_type \"sam\")",
                    path.display()
                )));
            }
        }
        if let Some(a) = root.get("architectures").and_then(Value::as_array).and_then(|a| a.first()) {
            if a.as_str() != Some("SamModel") {
                return Err(top.refuse("architectures", "vstar reads SamModel checkpoints"));
            }
        }

        let v = Keys::new(VISION_DEFAULTS, section(&root, "vision_config"), path, "vision_config.")?;
        let hidden_size = nonzero(&v, "hidden_size")?;
        let mlp_dim = match v.get("mlp_dim") {
            Some(_) => v.usize("mlp_dim")?,
            None => (hidden_size as f64 * v.f64("mlp_ratio")?) as usize,
        };
        let global_attn_indexes = match v.get("global_attn_indexes") {
            None => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_u64().map(|n| n as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| v.refuse("global_attn_indexes", "expected a list of layer indexes"))?,
            Some(_) => return Err(v.refuse("global_attn_indexes", "expected a list of layer indexes")),
        };
        let vision = SamVisionConfig {
            hidden_size,
            output_channels: nonzero(&v, "output_channels")?,
            num_hidden_layers: v.usize("num_hidden_layers")?,
            num_attention_heads: v.usize("num_attention_heads")?,
            image_size: int_size(&v, "image_size")?,
            patch_size: int_size(&v, "patch_size")?,
            hidden_act: SamActivation::read(&v)?,
            layer_norm_eps: v.f64("layer_norm_eps")?,
            qkv_bias: v.bool("qkv_bias")?,
            mlp_dim,
            use_abs_pos: v.bool("use_abs_pos")?,
            use_rel_pos: v.bool("use_rel_pos")?,
            window_size: v.usize("window_size")?,
            global_attn_indexes,
            num_pos_feats: nonzero(&v, "num_pos_feats")?,
        };
        divides(&v, "num_attention_heads", vision.num_attention_heads, vision.hidden_size)?;
        if v.usize("num_channels")? != 3 {
            return Err(v.refuse("num_channels", "SAM reads RGB images"));
        }
        if vision.patch_size == 0 || vision.patch_size > vision.image_size {
            return Err(v.refuse("patch_size", &format!("needs 1..={} (image_size)", vision.image_size)));
        }

        let p = Keys::new(PROMPT_DEFAULTS, section(&root, "prompt_encoder_config"), path, "prompt_encoder_config.")?;
        let prompt = SamPromptConfig {
            hidden_size: nonzero(&p, "hidden_size")?,
            image_size: int_size(&p, "image_size")?,
            patch_size: int_size(&p, "patch_size")?,
            num_point_embeddings: p.usize("num_point_embeddings")?,
        };
        if prompt.num_point_embeddings != 4 {
            return Err(p.refuse("num_point_embeddings", "SAM's prompt encoder has 4 (negative, positive, 2 corners)"));
        }
        if prompt.patch_size == 0 || prompt.image_size / prompt.patch_size != vision.grid() {
            return Err(p.refuse(
                "patch_size",
                &format!("its image_size / patch_size must equal the vision grid side {}", vision.grid()),
            ));
        }

        let d = Keys::new(DECODER_DEFAULTS, section(&root, "mask_decoder_config"), path, "mask_decoder_config.")?;
        let decoder = SamDecoderConfig {
            hidden_size: nonzero(&d, "hidden_size")?,
            hidden_act: SamActivation::read(&d)?,
            mlp_dim: d.usize("mlp_dim")?,
            num_hidden_layers: d.usize("num_hidden_layers")?,
            num_attention_heads: d.usize("num_attention_heads")?,
            attention_downsample_rate: nonzero(&d, "attention_downsample_rate")?,
            num_multimask_outputs: d.usize("num_multimask_outputs")?,
            iou_head_depth: d.usize("iou_head_depth")?,
            iou_head_hidden_dim: d.usize("iou_head_hidden_dim")?,
            layer_norm_eps: d.f64("layer_norm_eps")?,
        };
        let hd = decoder.hidden_size;
        divides(&d, "num_attention_heads", decoder.num_attention_heads, hd)?;
        divides(&d, "num_attention_heads", decoder.num_attention_heads, hd / decoder.attention_downsample_rate)?;
        if !hd.is_multiple_of(8) {
            return Err(d.refuse("hidden_size", "the upscaling path needs a multiple of 8"));
        }
        if decoder.iou_head_depth < 2 {
            return Err(d.refuse("iou_head_depth", "needs at least 2 (input and output layers)"));
        }
        if decoder.num_multimask_outputs == 0 {
            return Err(d.refuse("num_multimask_outputs", "must be at least 1"));
        }
        if prompt.hidden_size != hd || vision.output_channels != hd || 2 * vision.num_pos_feats != hd {
            return Err(d.refuse(
                "hidden_size",
                &format!(
                    "it must equal prompt_encoder_config.hidden_size ({}), vision_config.output_channels ({}) and \
                     2 x vision_config.num_pos_feats ({})",
                    prompt.hidden_size,
                    vision.output_channels,
                    2 * vision.num_pos_feats
                ),
            ));
        }
        Ok(Self { vision, prompt, decoder })
    }
}

/// What SamImageProcessor does to an image: resize (PIL bilinear) so the longest side is
/// `longest_edge`, rescale, normalise, zero-pad bottom / right to `pad`.
#[derive(Debug, Clone, PartialEq)]
pub struct SamProcessorConfig {
    pub longest_edge: usize,
    /// (height, width) after padding: the model's input size.
    pub pad: (usize, usize),
    pub rescale_factor: Option<f64>,
    pub mean_std: Option<([f64; 3], [f64; 3])>,
}

fn per_channel(k: &Keys, key: &str) -> Result<[f64; 3]> {
    let bad = || k.refuse(key, "expected a number or a list of 3 numbers");
    match k.get(key) {
        Some(Value::Number(n)) => Ok([n.as_f64().ok_or_else(bad)?; 3]),
        Some(Value::Array(a)) if a.len() == 3 => {
            let v: Vec<f64> = a.iter().map(Value::as_f64).collect::<Option<_>>().ok_or_else(bad)?;
            Ok([v[0], v[1], v[2]])
        }
        _ => Err(bad()),
    }
}

fn size_key(k: &Keys, key: &str, field: &str) -> Result<usize> {
    match k.get(key).and_then(|v| v.get(field)).and_then(Value::as_u64) {
        Some(n) if n > 0 => Ok(n as usize),
        _ => Err(k.refuse(key, &format!("expected {{\"{field}\": <positive integer>, ...}}"))),
    }
}

impl SamProcessorConfig {
    /// transformers' SamImageProcessor defaults for a model of input side `image_size`.
    pub fn for_model(image_size: usize) -> Self {
        let mean_std = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        Self {
            longest_edge: image_size,
            pad: (image_size, image_size),
            rescale_factor: Some(1.0 / 255.0),
            mean_std: Some(mean_std),
        }
    }

    /// From the folder: preprocessor_config.json, else processor_config.json's
    /// `image_processor`, else the defaults for `cfg`. The result must pad to the model's input.
    pub fn from_dir(dir: &Path, cfg: &SamVisionConfig) -> Result<Self> {
        let pre = dir.join("preprocessor_config.json");
        let proc = dir.join("processor_config.json");
        let (path, section) = if pre.is_file() {
            let root = read_object(&pre, "")?;
            (pre, root)
        } else if proc.is_file() {
            let root = read_object(&proc, "")?;
            (proc, root.get("image_processor").cloned().unwrap_or(Value::Null))
        } else {
            return Ok(Self::for_model(cfg.image_size));
        };
        let defaults = format!(
            r#"{{"size": {{"longest_edge": {s}}}, "pad_size": {{"height": {s}, "width": {s}}}, {}"#,
            &PROCESSOR_DEFAULTS[1..],
            s = cfg.image_size
        );
        let k = Keys::new(&defaults, &section, &path, "")?;
        for flag in ["do_resize", "do_pad"] {
            if !k.bool(flag)? {
                return Err(k.refuse(flag, "vstar's SAM preprocessing always resizes and pads"));
            }
        }
        if k.usize("resample")? != 2 {
            return Err(k.refuse("resample", "vstar implements SAM's bilinear (2) resize only"));
        }
        let c = Self {
            longest_edge: size_key(&k, "size", "longest_edge")?,
            pad: (size_key(&k, "pad_size", "height")?, size_key(&k, "pad_size", "width")?),
            rescale_factor: if k.bool("do_rescale")? { Some(k.f64("rescale_factor")?) } else { None },
            mean_std: if k.bool("do_normalize")? {
                Some((per_channel(&k, "image_mean")?, per_channel(&k, "image_std")?))
            } else {
                None
            },
        };
        if c.pad != (cfg.image_size, cfg.image_size) {
            return Err(k.refuse(
                "pad_size",
                &format!("the model reads {0}x{0} inputs (vision_config.image_size)", cfg.image_size),
            ));
        }
        if c.longest_edge > cfg.image_size {
            return Err(k.refuse("size", &format!("longest_edge must be at most the pad size {}", cfg.image_size)));
        }
        Ok(c)
    }
}
