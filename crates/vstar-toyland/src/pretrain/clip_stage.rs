//! Stages 2 and 6: CLIP stand-ins. A CLIP text transformer and an image tower trained with
//! CLIP's symmetric contrastive loss on captioned renders. The conditioning one starts the
//! text encoder; the evaluation one (other seed, other sizes) scores CLIP-T/CLIP-I.

use super::contrastive::info_nce;
use super::data;
use super::layout::Layout;
use super::tower::{ImageTower, TowerConfig};
use super::{optim, store, Output, Pretrain, StageSpec};
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::Path;
use vstar_nn::config::ClipTextConfig;
use vstar_nn::models::ClipTextModel;
use vstar_nn::tokenizer::ClipTokenizer;
use vstar_train::step_grads::StepGrads;

/// Toyland prompts are short: a 32-token context (BOS + 30 + EOS) holds every caption.
pub const CONTEXT: usize = 32;
/// Fixed contrastive logit scale (CLIP learns its own; fixed is steadier for short runs).
const LOGIT_SCALE: f64 = 20.0;
pub const FILE: &str = "clip.safetensors";

pub struct Sizes {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub embed: usize,
    pub tower: TowerConfig,
}

pub fn text_config(tok: &ClipTokenizer, s: &Sizes, with_projection: bool) -> serde_json::Value {
    let arch = if with_projection { "CLIPTextModelWithProjection" } else { "CLIPTextModel" };
    serde_json::json!({
        "architectures": [arch], "model_type": "clip_text_model",
        "vocab_size": tok.base_vocab, "hidden_size": s.hidden, "intermediate_size": 4 * s.hidden,
        "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
        "max_position_embeddings": CONTEXT, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
        "projection_dim": s.embed,
        "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id
    })
}

/// A text tower and an image tower mapping into one embedding space.
pub struct Clip {
    pub text: ClipTextModel,
    pub image: ImageTower,
}

impl Clip {
    pub fn new(text: &ClipTextConfig, tower: &TowerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self { text: ClipTextModel::new(text, vb.pp("text"))?, image: ImageTower::new(tower, vb.pp("image"))? })
    }

    /// Reads `dir/config.json` ({"text": .., "image": ..}) and `dir/clip.safetensors`.
    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        let cfg: serde_json::Value = vstar_nn::config::read_json(&dir.join("config.json"))?;
        let parse = |k: &str| {
            cfg.get(k).cloned().ok_or_else(|| candle_core::Error::Msg(format!("{}: no `{k}`", dir.display())))
        };
        let text: ClipTextConfig =
            serde_json::from_value(parse("text")?).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let tower: TowerConfig =
            serde_json::from_value(parse("image")?).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let w = store::load(dir, FILE, dev)?.ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: missing; run `vstar toyland pretrain`", dir.join(FILE).display()))
        })?;
        Self::new(&text, &tower, store::frozen(&w, dev))
    }

    pub fn embed_text(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.text.forward(ids, None)?.pooled)
    }
}

/// Token ids (B, CONTEXT) for captions.
pub fn ids(tok: &ClipTokenizer, captions: &[String], dev: &Device) -> Result<Tensor> {
    let mut rows = vec![];
    for c in captions {
        rows.extend(tok.encode(c)?.ids);
    }
    Tensor::from_vec(rows, (captions.len(), tok.max_length), dev)
}

fn train_clip(
    p: &Pretrain,
    name: &str,
    stage: u64,
    dir: &Path,
    sizes: &Sizes,
    steps: usize,
) -> Result<HashMap<String, Tensor>> {
    let tok = ClipTokenizer::from_dir(&Path::new(&p.out).join("tokenizer"))?;
    let text_json = text_config(&tok, sizes, true);
    let text: ClipTextConfig = serde_json::from_value(text_json.clone()).expect("valid CLIP config");
    let config = serde_json::json!({ "text": text_json, "image": sizes.tower });
    let (b, dev) = (p.recipe.batch, &p.dev);
    let spec = StageSpec {
        name,
        id: stage,
        outputs: Output::whole(dir.to_path_buf(), FILE, config),
        init: HashMap::new(),
        steps,
        optim: optim(1e-3, steps),
        ema: None,
    };
    p.stage(
        spec,
        |vb| Clip::new(&text, &sizes.tower, vb),
        |clip, s| {
            let (specs, captions) = data::captioned(p.seed, stage, s, b);
            let t = clip.embed_text(&ids(&tok, &captions, dev)?)?;
            let i = clip.image.forward(&data::images(&specs, dev)?)?;
            let (loss, acc) = info_nce(&t, &i, LOGIT_SCALE)?;
            StepGrads::whole(&loss, vec![("match", acc)])
        },
    )
}

pub fn conditioning_sizes() -> Sizes {
    Sizes {
        hidden: 128,
        layers: 3,
        heads: 4,
        embed: 128,
        tower: TowerConfig { channels: vec![32, 64, 128], embed_dim: 128, groups: 16, stem_stride: 2 },
    }
}

pub fn eval_sizes() -> Sizes {
    Sizes {
        hidden: 96,
        layers: 2,
        heads: 3,
        embed: 96,
        tower: TowerConfig { channels: vec![24, 48, 96], embed_dim: 96, groups: 8, stem_stride: 2 },
    }
}

/// Stage 2: the conditioning CLIP. Returns its text tower's weights (CLIPTextModel names) and
/// config: the UNet stage starts the text encoder from them and writes `text_encoder/`.
pub fn train_conditioning(p: &Pretrain, layout: &Layout) -> Result<(HashMap<String, Tensor>, serde_json::Value)> {
    let sizes = conditioning_sizes();
    let w =
        train_clip(p, "conditioning-clip", 2 + 10, &layout.oracle("conditioning_clip"), &sizes, p.recipe.clip_steps)?;
    let text: HashMap<String, Tensor> = w
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("text.").filter(|k| *k != "text_projection.weight").map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let tok = ClipTokenizer::from_dir(&layout.tokenizer())?;
    Ok((text, text_config(&tok, &sizes, false)))
}

/// Stage 6: the evaluation CLIP (`oracles/eval_clip/`).
pub fn train_eval(p: &Pretrain, layout: &Layout) -> Result<()> {
    train_clip(p, "eval-clip", 6 + 10, &layout.oracle("eval_clip"), &eval_sizes(), p.recipe.eval_clip_steps)?;
    Ok(())
}
