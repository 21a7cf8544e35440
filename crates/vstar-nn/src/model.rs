//! `Model`: tokenizer(s) + text encoder(s) + UNet + VAE of one diffusers-layout folder
//! (SD 1.5, SD 2.1, SDXL or Toyland), and prompt encoding the way each family conditions.

use crate::config::{read_json, ClipTextConfig, UNetConfig, VaeConfig};
use crate::models::{AddedCond, ClipTextModel, UNet, Vae};
use crate::tokenizer::ClipTokenizer;
use crate::weights::{load_component, Source};
use candle_core::{DType, Device, Error, Result, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Which way the family conditions the UNet on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// SD 1.x / 2.x / Toyland: last hidden state of one encoder.
    Sd,
    /// SDXL: penultimate states of two encoders concatenated, pooled text + size ids.
    Sdxl,
}

/// A text encoder with its tokenizer.
#[derive(Clone)]
pub struct TextTower {
    pub tokenizer: ClipTokenizer,
    pub encoder: ClipTextModel,
}

/// What the UNet is conditioned on, for a batch of prompts.
#[derive(Debug, Clone)]
pub struct Conditioning {
    pub context: Tensor,
    pub added: Option<AddedCond>,
}

impl Conditioning {
    /// Rows stacked in order: the batch of one UNet call built from several prompt kinds.
    pub fn cat(parts: &[&Conditioning]) -> Result<Conditioning> {
        let ctx: Vec<&Tensor> = parts.iter().map(|c| &c.context).collect();
        let added = match parts.iter().map(|c| c.added.as_ref()).collect::<Option<Vec<_>>>() {
            Some(a) if !a.is_empty() => {
                let te: Vec<&Tensor> = a.iter().map(|x| &x.text_embeds).collect();
                let ti: Vec<&Tensor> = a.iter().map(|x| &x.time_ids).collect();
                Some(AddedCond { text_embeds: Tensor::cat(&te, 0)?, time_ids: Tensor::cat(&ti, 0)? })
            }
            _ => None,
        };
        Ok(Conditioning { context: Tensor::cat(&ctx, 0)?, added })
    }
}

pub struct Model {
    pub root: PathBuf,
    pub family: Family,
    pub text: Vec<TextTower>,
    pub unet: UNet,
    pub vae: Vae,
    /// `scheduler/scheduler_config.json`, parsed by the diffusion crate.
    pub scheduler_config: Value,
    /// SDXL: an absent negative prompt is all zeros (diffusers' force_zeros_for_empty_prompt).
    pub zeros_for_empty_negative: bool,
    pub device: Device,
    /// Entries in the weight files no layer used, per component (reported, not fatal).
    pub unused: Vec<(String, Vec<String>)>,
}

fn component<T>(
    root: &Path,
    name: &str,
    dev: &Device,
    build: impl FnOnce(&Path, candle_nn::VarBuilder) -> Result<T>,
) -> Result<(T, Source)> {
    let dir = root.join(name);
    let (vb, src) = load_component(&dir, DType::F32, dev)?;
    let m = build(&dir, vb)?;
    Ok((m, src))
}

impl Model {
    /// Loads a diffusers-layout folder (the one `model_index.json` sits in).
    pub fn load(root: &Path, dev: &Device) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::Msg(format!(
                "{}: model folder not found; pass a diffusers-layout folder to --model",
                root.display()
            )));
        }
        let index: Value = read_json(&root.join("model_index.json"))?;
        let class = index.get("_class_name").and_then(|c| c.as_str()).unwrap_or("StableDiffusionPipeline");
        let family = if class.contains("XL") { Family::Sdxl } else { Family::Sd };
        let mut unused = vec![];
        let mut text = vec![];
        let towers: &[(&str, &str)] = match family {
            Family::Sd => &[("text_encoder", "tokenizer")],
            Family::Sdxl => &[("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")],
        };
        for (enc, tok) in towers {
            let tokenizer = ClipTokenizer::from_dir(&root.join(tok))?;
            let (encoder, src) = component(root, enc, dev, |d, vb| {
                ClipTextModel::new(&ClipTextConfig::from_file(&d.join("config.json"))?, vb)
            })?;
            unused.push((enc.to_string(), src.unused()));
            text.push(TextTower { tokenizer, encoder });
        }
        let (unet, src) =
            component(root, "unet", dev, |d, vb| UNet::new(&UNetConfig::from_file(&d.join("config.json"))?, vb))?;
        unused.push(("unet".into(), src.unused()));
        let (vae, src) =
            component(root, "vae", dev, |d, vb| Vae::new(&VaeConfig::from_file(&d.join("config.json"))?, vb))?;
        unused.push(("vae".into(), src.unused()));
        let scheduler_config: Value = read_json(&root.join("scheduler").join("scheduler_config.json"))?;
        let zeros = family == Family::Sdxl
            && index.get("force_zeros_for_empty_prompt").and_then(|v| v.as_bool()).unwrap_or(true);
        unused.retain(|(_, u)| !u.is_empty());
        Ok(Self {
            root: root.to_path_buf(),
            family,
            text,
            unet,
            vae,
            scheduler_config,
            zeros_for_empty_negative: zeros,
            device: dev.clone(),
            unused,
        })
    }

    /// Latent (channels, h, w) for an image of height x width pixels.
    pub fn latent_shape(&self, height: usize, width: usize) -> Result<(usize, usize, usize)> {
        let f = self.vae.config.downsample_factor();
        if height % f != 0 || width % f != 0 || height == 0 || width == 0 {
            return Err(Error::Msg(format!(
                "--height/--width must be positive multiples of {f} for this model (got {height}x{width})"
            )));
        }
        Ok((self.unet.config.in_channels, height / f, width / f))
    }

    /// Token ids per tower for the prompts ((B, max_length) each); warns on truncation.
    pub fn token_ids(&self, prompts: &[&str]) -> Result<Vec<Tensor>> {
        self.text
            .iter()
            .map(|t| {
                let mut rows = Vec::with_capacity(prompts.len() * t.tokenizer.max_length);
                for p in prompts {
                    let e = t.tokenizer.encode(p)?;
                    if e.truncated {
                        eprintln!(
                            "warning: prompt longer than {} tokens was truncated, as CLIP does: {p:?}",
                            t.tokenizer.max_length
                        );
                    }
                    rows.extend(e.ids);
                }
                Tensor::from_vec(rows, (prompts.len(), t.tokenizer.max_length), &self.device)
            })
            .collect()
    }

    /// Encodes prompts into UNet conditioning. `size`: output (height, width) in pixels,
    /// used by SDXL's size ids.
    pub fn encode(
        &self,
        prompts: &[&str],
        size: (usize, usize),
        adapter_scale: Option<&Tensor>,
    ) -> Result<Conditioning> {
        let ids = self.token_ids(prompts)?;
        self.encode_ids(&ids, size, adapter_scale)
    }

    pub fn encode_ids(
        &self,
        ids: &[Tensor],
        (h, w): (usize, usize),
        adapter_scale: Option<&Tensor>,
    ) -> Result<Conditioning> {
        match self.family {
            Family::Sd => {
                let out = self.text[0].encoder.forward(&ids[0], adapter_scale)?;
                Ok(Conditioning { context: out.last_hidden, added: None })
            }
            Family::Sdxl => {
                let o1 = self.text[0].encoder.forward(&ids[0], adapter_scale)?;
                let o2 = self.text[1].encoder.forward(&ids[1], adapter_scale)?;
                let context = Tensor::cat(&[&o1.penultimate, &o2.penultimate], 2)?;
                let b = context.dim(0)?;
                let t = [h as f32, w as f32, 0.0, 0.0, h as f32, w as f32];
                let time_ids = Tensor::new(&t, &self.device)?.unsqueeze(0)?.repeat((b, 1))?;
                Ok(Conditioning { context, added: Some(AddedCond { text_embeds: o2.pooled, time_ids }) })
            }
        }
    }

    /// The unconditional branch: "" or the user's negative prompt; SDXL zeros when absent.
    pub fn encode_negative(&self, negative: Option<&str>, n: usize, size: (usize, usize)) -> Result<Conditioning> {
        let c = self.encode(&vec![negative.unwrap_or(""); n], size, None)?;
        if negative.is_none() && self.zeros_for_empty_negative {
            let added = c
                .added
                .map(|a| -> Result<AddedCond> {
                    Ok(AddedCond { text_embeds: a.text_embeds.zeros_like()?, time_ids: a.time_ids })
                })
                .transpose()?;
            return Ok(Conditioning { context: c.context.zeros_like()?, added });
        }
        Ok(c)
    }
}
