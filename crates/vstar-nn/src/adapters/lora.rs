//! LoRA files in the layouts users exchange:
//! - diffusers / PEFT: `unet.<path>.lora_A.weight` / `.lora_B.weight` (and `text_encoder.`),
//!   alpha from the file's `lora_adapter_metadata` when present, else alpha = rank (scale 1),
//!   as diffusers' `load_lora_weights` does;
//! - kohya / A1111: `lora_unet_<path with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`
//!   (and `lora_te_`), scale = alpha / rank.

use crate::layers::{Delta, Slots};
use crate::model::Model;
use candle_core::{safetensors::MmapedSafetensors, DType, Device, Error, Result, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One layer's low-rank pair and its alpha (None = alpha equals the rank).
struct Pair {
    down: Option<Tensor>,
    up: Option<Tensor>,
    alpha: Option<f64>,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{}: {msg}", path.display()))
}

/// diffusers' `lora_adapter_metadata` (JSON in the safetensors header) may carry lora_alpha.
fn metadata_alpha(path: &Path) -> Option<f64> {
    let bytes = std::fs::read(path).ok()?;
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..8 + n)?).ok()?;
    let meta = header.get("__metadata__")?.get("lora_adapter_metadata")?.as_str()?;
    let meta: serde_json::Value = serde_json::from_str(meta).ok()?;
    meta.get("unet.lora_alpha").or_else(|| meta.get("lora_alpha")).and_then(|a| a.as_f64())
}

/// A tower's layer names as files spell them -> the model's names. Text-encoder layers are
/// matched without transformers' optional `text_model.` prefix; kohya spells dots as `_`.
struct Names {
    dotted: HashMap<String, String>,
    underscored: HashMap<String, String>,
}

impl Names {
    fn of(slots: &Slots) -> Self {
        let (mut dotted, mut underscored) = (HashMap::new(), HashMap::new());
        for (n, _, _) in slots.names() {
            let short = n.strip_prefix("text_model.").unwrap_or(&n).to_string();
            underscored.insert(short.replace('.', "_"), n.clone());
            dotted.insert(short, n);
        }
        Self { dotted, underscored }
    }

    fn dotted(&self, layer: &str) -> Option<String> {
        self.dotted.get(layer.strip_prefix("text_model.").unwrap_or(layer)).cloned()
    }
}

/// (tower, model layer name, part) of a key: tower 0 is the UNet, 1.. the text encoders.
fn parse_key(key: &str, towers: &[Names]) -> Option<(usize, String, &'static str)> {
    const PEFT: [&str; 3] = ["unet.", "text_encoder.", "text_encoder_2."];
    const KOHYA: [&str; 3] = ["lora_unet_", "lora_te_", "lora_te2_"];
    for (suffix, part) in [(".lora_A.weight", "down"), (".lora_B.weight", "up")] {
        if let Some(p) = key.strip_suffix(suffix) {
            for (i, prefix) in PEFT.iter().enumerate() {
                if let (Some(l), Some(names)) = (p.strip_prefix(prefix), towers.get(i)) {
                    return names.dotted(l).map(|n| (i, n, part));
                }
            }
        }
    }
    for (suffix, part) in [(".lora_down.weight", "down"), (".lora_up.weight", "up"), (".alpha", "alpha")] {
        if let Some(p) = key.strip_suffix(suffix) {
            for (i, prefix) in KOHYA.iter().enumerate() {
                if let (Some(l), Some(names)) = (p.strip_prefix(prefix), towers.get(i)) {
                    return names.underscored.get(l).map(|n| (i, n.clone(), part));
                }
            }
        }
    }
    None
}

/// Attaches every LoRA pair of the file to the model's layers, scaled by `multiplier`.
/// Returns the number of layers adapted.
pub fn load_lora(path: &Path, model: &Model, multiplier: f64) -> Result<usize> {
    let st = unsafe { MmapedSafetensors::new(path) }
        .map_err(|e| bad(path, format!("not a readable safetensors LoRA ({e})")))?;
    let slots: Vec<&Slots> =
        std::iter::once(&model.unet.slots).chain(model.text.iter().map(|t| &t.encoder.slots)).collect();
    let towers: Vec<Names> = slots.iter().map(|s| Names::of(s)).collect();
    let mut pairs: BTreeMap<(usize, String), Pair> = BTreeMap::new();
    let mut unknown = vec![];
    for (key, _) in st.tensors() {
        let Some((tower, layer, part)) = parse_key(&key, &towers) else {
            unknown.push(key);
            continue;
        };
        let t = st.load(&key, &Device::Cpu)?.to_dtype(DType::F32)?.to_device(&model.device)?;
        let e = pairs.entry((tower, layer)).or_insert(Pair { down: None, up: None, alpha: None });
        match part {
            "down" => e.down = Some(t),
            "up" => e.up = Some(t),
            _ => e.alpha = Some(t.flatten_all()?.to_vec1::<f32>()?[0] as f64),
        }
    }
    if pairs.is_empty() {
        return Err(bad(
            path,
            "no LoRA weights found (expected diffusers/PEFT `lora_A`/`lora_B` or kohya `lora_down`/`lora_up` keys)",
        ));
    }
    unknown.sort();
    if !unknown.is_empty() {
        return Err(bad(
            path,
            format!(
                "{} keys name no layer of this model (e.g. `{}`): was it made for another base model?",
                unknown.len(),
                unknown[0]
            ),
        ));
    }
    let file_alpha = metadata_alpha(path);
    for ((tower, layer), p) in &pairs {
        let (Some(down), Some(up)) = (&p.down, &p.up) else {
            return Err(bad(path, format!("layer `{layer}` has only one of its two LoRA matrices")));
        };
        let rank = down.dim(0)? as f64;
        let alpha = p.alpha.or(file_alpha).unwrap_or(rank);
        // Conv-shaped LoRA factors (kohya saves linear ones as (r, in, 1, 1) at times).
        let (down, up) = (down.flatten_from(1)?, up.flatten_from(1)?);
        let delta = Delta::Lora { down, up, scale: multiplier * alpha / rank };
        slots[*tower].push(layer, delta).map_err(|e| bad(path, e))?;
    }
    Ok(pairs.len())
}

/// The layouts `save_lora` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraFormat {
    /// diffusers / PEFT (`pytorch_lora_weights.safetensors`), alpha and rank in the header's
    /// `lora_adapter_metadata`.
    Diffusers,
    /// kohya / A1111 (`lora_unet_*`, an `.alpha` tensor per layer).
    Kohya,
}

/// One trained layer: tower (0 = UNet, 1 = text encoder), the model's layer name, down (r, in)
/// and up (out, r).
pub struct LoraLayer {
    pub tower: usize,
    pub layer: String,
    pub down: Tensor,
    pub up: Tensor,
}

/// The file's key for a part (`down`/`up`/`alpha`) of a layer.
fn key(format: LoraFormat, tower: usize, layer: &str, part: &str) -> String {
    match format {
        LoraFormat::Diffusers => {
            let prefix = ["unet.", "text_encoder.", "text_encoder_2."][tower];
            let suffix = if part == "down" { "lora_A.weight" } else { "lora_B.weight" };
            format!("{prefix}{layer}.{suffix}")
        }
        LoraFormat::Kohya => {
            let prefix = ["lora_unet_", "lora_te_", "lora_te2_"][tower];
            let l = layer.strip_prefix("text_model.").unwrap_or(layer).replace('.', "_");
            let suffix = match part {
                "down" => "lora_down.weight",
                "up" => "lora_up.weight",
                _ => "alpha",
            };
            format!("{prefix}{l}.{suffix}")
        }
    }
}

/// Writes LoRA layers as `format` (f32), atomically (temporary file, then rename).
pub fn save_lora(path: &Path, layers: &[LoraLayer], alpha: f64, format: LoraFormat) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vec![];
    let rank = layers.first().map(|l| l.down.dim(0)).transpose()?.unwrap_or(0);
    for l in layers {
        tensors.push((key(format, l.tower, &l.layer, "down"), l.down.contiguous()?));
        tensors.push((key(format, l.tower, &l.layer, "up"), l.up.contiguous()?));
        if format == LoraFormat::Kohya {
            tensors.push((key(format, l.tower, &l.layer, "alpha"), Tensor::new(alpha as f32, &Device::Cpu)?));
        }
    }
    let meta = (format == LoraFormat::Diffusers).then(|| {
        // diffusers passes these (prefix stripped) to peft's LoraConfig as they are.
        let targets: Vec<&str> = layers.iter().filter(|l| l.tower == 0).map(|l| l.layer.as_str()).collect();
        let m = serde_json::json!({ "unet.r": rank, "unet.lora_alpha": alpha, "unet.target_modules": targets });
        HashMap::from([("lora_adapter_metadata".to_string(), m.to_string())])
    });
    super::write_safetensors(path, &tensors, meta)
}
