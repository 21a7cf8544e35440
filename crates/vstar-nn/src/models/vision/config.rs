//! Image-encoder configs from the config.json transformers saves: CLIPModel (nested
//! `vision_config` / `text_config`), CLIPVisionModel[WithProjection], ViTModel (DINO) and
//! Dinov2Model. Absent keys take transformers' class defaults; values vstar does not
//! implement are refused by key and file.

use super::keys::{read_object, Keys};
use crate::config::ClipTextConfig;
use candle_core::{Error, Result};
use serde_json::Value;
use std::path::Path;

const CLIP_VISION_DEFAULTS: &str = r#"{"hidden_size": 768, "intermediate_size": 3072, "projection_dim": 512,
    "num_hidden_layers": 12, "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 32,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}"#;
const CLIP_TEXT_DEFAULTS: &str = r#"{"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048,
    "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5, "eos_token_id": 49407}"#;
const CLIP_DEFAULTS: &str = r#"{"projection_dim": 512}"#;
const VIT_DEFAULTS: &str = r#"{"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16,
    "num_channels": 3, "qkv_bias": true}"#;
const DINOV2_DEFAULTS: &str = r#"{"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "mlp_ratio": 4, "hidden_act": "gelu", "layer_norm_eps": 1e-6, "image_size": 224, "patch_size": 14,
    "num_channels": 3, "qkv_bias": true, "use_swiglu_ffn": false}"#;

/// The MLP activation (transformers' `hidden_act`; "gelu" is the exact erf form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    QuickGelu,
    Gelu,
}

/// Which image encoder, and so which parameter names and output rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// CLIP's vision tower: layernorm before the encoder, post-layernorm on the CLS token only.
    Clip,
    /// ViTModel as DINO ships it: final layernorm on every token, fixed input size.
    Vit,
    /// Dinov2Model: ViT plus layer scale, position embeddings interpolated to the input size.
    Dinov2,
}

/// The transformer tower every family here shares.
#[derive(Debug, Clone, PartialEq)]
pub struct TowerConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub image_size: usize,
    pub patch_size: usize,
    pub qkv_bias: bool,
}

#[derive(Debug, Clone)]
pub struct VisionConfig {
    pub family: Family,
    pub tower: TowerConfig,
    /// Output size of `visual_projection` (CLIPVisionModelWithProjection, CLIPModel).
    pub projection_dim: Option<usize>,
    /// A full CLIPModel's text half, configured to load its `text_projection`.
    pub text: Option<ClipTextConfig>,
}

fn activation(k: &Keys) -> Result<Activation> {
    match k.str("hidden_act")? {
        "quick_gelu" => Ok(Activation::QuickGelu),
        "gelu" => Ok(Activation::Gelu),
        _ => Err(k.refuse("hidden_act", "vstar implements gelu and quick_gelu")),
    }
}

fn check_heads(k: &Keys, hidden: usize, heads: usize) -> Result<()> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(k.refuse("num_attention_heads", &format!("hidden_size {hidden} is not divisible by it")));
    }
    Ok(())
}

/// Keys every family names alike; `intermediate_size` and `qkv_bias` come from the caller.
fn tower(k: &Keys, intermediate_size: usize, qkv_bias: bool) -> Result<TowerConfig> {
    let t = TowerConfig {
        hidden_size: k.usize("hidden_size")?,
        intermediate_size,
        num_hidden_layers: k.usize("num_hidden_layers")?,
        num_attention_heads: k.usize("num_attention_heads")?,
        hidden_act: activation(k)?,
        layer_norm_eps: k.f64("layer_norm_eps")?,
        image_size: k.usize("image_size")?,
        patch_size: k.usize("patch_size")?,
        qkv_bias,
    };
    check_heads(k, t.hidden_size, t.num_attention_heads)?;
    if k.usize("num_channels")? != 3 {
        return Err(k.refuse("num_channels", "image encoders here read RGB"));
    }
    if t.patch_size == 0 || t.patch_size > t.image_size {
        return Err(k.refuse("patch_size", &format!("needs 1..={} (image_size)", t.image_size)));
    }
    Ok(t)
}

/// A nested section, with the legacy `<name>_dict` copy (older CLIP exports) taking precedence.
fn section(root: &Value, name: &str) -> Value {
    let mut s = root.get(name).cloned().filter(Value::is_object).unwrap_or_else(|| Value::Object(Default::default()));
    if let (Some(legacy), Some(obj)) = (root.get(format!("{name}_dict")).and_then(Value::as_object), s.as_object_mut())
    {
        obj.extend(legacy.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    s
}

fn clip_text(k: &Keys, projection_dim: usize) -> Result<ClipTextConfig> {
    activation(k)?;
    let c = ClipTextConfig {
        vocab_size: k.usize("vocab_size")?,
        hidden_size: k.usize("hidden_size")?,
        intermediate_size: k.usize("intermediate_size")?,
        num_hidden_layers: k.usize("num_hidden_layers")?,
        num_attention_heads: k.usize("num_attention_heads")?,
        max_position_embeddings: k.usize("max_position_embeddings")?,
        hidden_act: k.str("hidden_act")?.to_string(),
        layer_norm_eps: k.f64("layer_norm_eps")?,
        projection_dim: Some(projection_dim),
        eos_token_id: k.i64("eos_token_id")?,
        // CLIPModel keeps `text_projection` beside the tower, where this architecture loads it.
        architectures: Some(vec!["CLIPTextModelWithProjection".into()]),
    };
    check_heads(k, c.hidden_size, c.num_attention_heads)?;
    Ok(c)
}

impl VisionConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let root = read_object(
            path,
            "an image encoder folder needs the config.json transformers saves \
             (CLIPModel, CLIPVisionModel[WithProjection], ViTModel or Dinov2Model)",
        )?;
        let top = |defaults| Keys::new(defaults, &root, path, "");
        let model_type = root.get("model_type").and_then(Value::as_str).unwrap_or_default();
        let (expected, config) = match model_type {
            "clip" => {
                let k = top(CLIP_DEFAULTS)?;
                let projection_dim = k.usize("projection_dim")?;
                let v = Keys::new(CLIP_VISION_DEFAULTS, &section(&root, "vision_config"), path, "vision_config.")?;
                let t = Keys::new(CLIP_TEXT_DEFAULTS, &section(&root, "text_config"), path, "text_config.")?;
                let cfg = Self {
                    family: Family::Clip,
                    tower: tower(&v, v.usize("intermediate_size")?, true)?,
                    projection_dim: Some(projection_dim),
                    text: Some(clip_text(&t, projection_dim)?),
                };
                (&["CLIPModel"][..], cfg)
            }
            "clip_vision_model" => {
                let k = top(CLIP_VISION_DEFAULTS)?;
                let with_projection = architecture(&root) == Some("CLIPVisionModelWithProjection");
                let cfg = Self {
                    family: Family::Clip,
                    tower: tower(&k, k.usize("intermediate_size")?, true)?,
                    projection_dim: if with_projection { Some(k.usize("projection_dim")?) } else { None },
                    text: None,
                };
                (&["CLIPVisionModel", "CLIPVisionModelWithProjection"][..], cfg)
            }
            "vit" => {
                let k = top(VIT_DEFAULTS)?;
                let t = tower(&k, k.usize("intermediate_size")?, k.bool("qkv_bias")?)?;
                (&["ViTModel"][..], Self { family: Family::Vit, tower: t, projection_dim: None, text: None })
            }
            "dinov2" => {
                let k = top(DINOV2_DEFAULTS)?;
                if k.bool("use_swiglu_ffn")? {
                    return Err(k.refuse("use_swiglu_ffn", "only the plain MLP of ViT-S/B/L is implemented"));
                }
                // transformers: fc1 has int(hidden_size * mlp_ratio) outputs.
                let mlp = (k.usize("hidden_size")? as f64 * k.f64("mlp_ratio")?) as usize;
                let t = tower(&k, mlp, k.bool("qkv_bias")?)?;
                (&["Dinov2Model"][..], Self { family: Family::Dinov2, tower: t, projection_dim: None, text: None })
            }
            other => {
                let found = if other.is_empty() { "no `model_type`".into() } else { format!("model_type {other:?}") };
                return Err(Error::Msg(format!(
                    "{}: {found}, not an image encoder vstar reads (expected the config.json of a transformers \
                     CLIPModel, CLIPVisionModel[WithProjection], ViTModel or Dinov2Model)",
                    path.display()
                )));
            }
        };
        match architecture(&root) {
            Some(a) if !expected.contains(&a) => Err(top("{}")?.refuse(
                "architectures",
                &format!("vstar reads {}, whose weights have no head", expected.join(" or ")),
            )),
            _ => Ok(config),
        }
    }
}

fn architecture(root: &Value) -> Option<&str> {
    root.get("architectures")?.as_array()?.first()?.as_str()
}
