//! CLIP text transformer (transformers `CLIPTextModel` / `CLIPTextModelWithProjection`),
//! with extra token rows appended to the embedding table for textual inversion.

use crate::config::ClipTextConfig;
use crate::layers::ops::{quick_gelu, LayerNorm};
use crate::layers::self_attention::SelfAttention;
use crate::layers::{AdaptedLinear, Slots};
use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone)]
struct EncoderLayer {
    ln1: LayerNorm,
    attn: SelfAttention,
    ln2: LayerNorm,
    fc1: AdaptedLinear,
    fc2: AdaptedLinear,
    quick: bool,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor, mask: &Tensor, s: Option<&Tensor>) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln1.forward(x)?, Some(mask), s)?)?;
        let h = self.fc1.forward(&self.ln2.forward(&x)?, s)?;
        let h = if self.quick { quick_gelu(&h)? } else { h.gelu_erf()? };
        x.clone() + self.fc2.forward(&h, s)?
    }
}

/// What the encoder returns: every hidden state the SD family needs.
#[derive(Debug, Clone)]
pub struct TextOutput {
    /// After the final layer norm (SD 1.5 / 2.1 conditioning).
    pub last_hidden: Tensor,
    /// Output of the second-to-last layer, no final norm (SDXL conditioning, "clip skip 2").
    pub penultimate: Tensor,
    /// last_hidden at the end-of-text token (B, D), projected when the model has a projection.
    pub pooled: Tensor,
}

#[derive(Debug, Clone)]
pub struct ClipTextModel {
    pub config: ClipTextConfig,
    pub slots: Slots,
    token_embedding: Tensor,
    /// Learned rows for ids >= vocab_size (textual inversion); a Var while training.
    extra_rows: Arc<RwLock<Option<Tensor>>>,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_ln: LayerNorm,
    projection: Option<Tensor>,
}

impl ClipTextModel {
    pub fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let slots = Slots::default();
        let d = cfg.hidden_size;
        // transformers 4 saves `text_model.*` (every released SD checkpoint); transformers 5
        // saves CLIPTextModel without that prefix. New weights get the prefix.
        let tm = if vb.contains_tensor("embeddings.token_embedding.weight") { vb.clone() } else { vb.pp("text_model") };
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        let emb = tm.pp("embeddings");
        let token_embedding = emb.pp("token_embedding").get_with_hints((cfg.vocab_size, d), "weight", init)?;
        let position_embedding =
            emb.pp("position_embedding").get_with_hints((cfg.max_position_embeddings, d), "weight", init)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let v = tm.pp(format!("encoder.layers.{i}"));
                let a = v.pp("self_attn");
                Ok(EncoderLayer {
                    ln1: LayerNorm::new(d, cfg.layer_norm_eps, v.pp("layer_norm1"))?,
                    attn: SelfAttention {
                        q: AdaptedLinear::new(d, d, true, a.pp("q_proj"), &slots)?,
                        k: AdaptedLinear::new(d, d, true, a.pp("k_proj"), &slots)?,
                        v: AdaptedLinear::new(d, d, true, a.pp("v_proj"), &slots)?,
                        out: AdaptedLinear::new(d, d, true, a.pp("out_proj"), &slots)?,
                        heads: cfg.num_attention_heads,
                    },
                    ln2: LayerNorm::new(d, cfg.layer_norm_eps, v.pp("layer_norm2"))?,
                    fc1: AdaptedLinear::new(d, cfg.intermediate_size, true, v.pp("mlp.fc1"), &slots)?,
                    fc2: AdaptedLinear::new(cfg.intermediate_size, d, true, v.pp("mlp.fc2"), &slots)?,
                    quick: cfg.hidden_act == "quick_gelu",
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_ln = LayerNorm::new(d, cfg.layer_norm_eps, tm.pp("final_layer_norm"))?;
        let projection = match (cfg.with_projection(), cfg.projection_dim) {
            (true, Some(p)) => Some(vb.pp("text_projection").get_with_hints(
                (p, d),
                "weight",
                candle_nn::init::DEFAULT_KAIMING_NORMAL,
            )?),
            _ => None,
        };
        Ok(Self {
            config: cfg.clone(),
            slots,
            token_embedding,
            extra_rows: Arc::default(),
            position_embedding,
            layers,
            final_ln,
            projection,
        })
    }

    /// Sets the rows for ids vocab_size.. (N, D); None removes them.
    pub fn set_extra_rows(&self, rows: Option<Tensor>) -> Result<()> {
        if let Some(r) = &rows {
            let d = self.config.hidden_size;
            if r.rank() != 2 || r.dim(1)? != d {
                candle_core::bail!(
                    "learned token embeddings have shape {:?}, this text encoder needs (N, {d})",
                    r.dims()
                );
            }
        }
        *self.extra_rows.write().unwrap() = rows;
        Ok(())
    }

    /// The learned rows for ids vocab_size.., if any.
    pub fn extra_rows(&self) -> Option<Tensor> {
        self.extra_rows.read().unwrap().clone()
    }

    /// The embedding row of a base-vocabulary id (D,): a textual inversion's init word.
    pub fn token_row(&self, id: u32) -> Result<Tensor> {
        self.token_embedding.get(id as usize)
    }

    fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, n) = ids.dims2()?;
        let v = self.config.vocab_size as i64;
        let flat = ids.flatten_all()?.to_dtype(DType::I64)?;
        let extra = self.extra_rows.read().unwrap().clone();
        let max = flat.max(0)?.to_scalar::<i64>()?;
        let n_extra = extra.as_ref().map(|e| e.dim(0)).transpose()?.unwrap_or(0) as i64;
        if max >= v + n_extra {
            candle_core::bail!("token id {max} is outside the vocabulary ({} + {n_extra} learned)", v);
        }
        let base_ids = flat.clamp(0i64, v - 1)?;
        let base = self.token_embedding.index_select(&base_ids, 0)?;
        let out = match extra {
            Some(rows) if max >= v => {
                let extra_ids = (flat.clone() - v as f64)?.clamp(0i64, n_extra - 1)?;
                let learned = rows.index_select(&extra_ids, 0)?;
                let is_extra = flat.ge(v)?.unsqueeze(1)?.broadcast_as(base.shape())?;
                is_extra.where_cond(&learned, &base)?
            }
            _ => base,
        };
        out.reshape((b, n, ()))
    }

    fn causal_mask(n: usize, dev: &Device) -> Result<Tensor> {
        let m: Vec<f32> =
            (0..n).flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
        Tensor::from_slice(&m, (1, 1, n, n), dev)
    }

    /// ids: (B, N) token ids. `adapter_scale`: per-row strength of text-encoder adapters.
    pub fn forward(&self, ids: &Tensor, adapter_scale: Option<&Tensor>) -> Result<TextOutput> {
        let (_, n) = ids.dims2()?;
        let pos = self.position_embedding.narrow(0, 0, n)?;
        let mut h = self.embed_tokens(ids)?.broadcast_add(&pos)?;
        let mask = Self::causal_mask(n, ids.device())?;
        let mut penultimate = h.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, &mask, adapter_scale)?;
            if i + 2 == self.layers.len() {
                penultimate = h.clone();
            }
        }
        let last_hidden = self.final_ln.forward(&h)?;
        let pooled = self.pool(&last_hidden, ids)?;
        let pooled = match &self.projection {
            Some(p) => pooled.matmul(&p.t()?)?,
            None => pooled,
        };
        Ok(TextOutput { last_hidden, penultimate, pooled })
    }

    /// Hidden state at the end-of-text token: the first `eos_token_id`, or the largest id when
    /// the config carries the legacy eos id 2 (as transformers does).
    fn pool(&self, hidden: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let ids = ids.to_dtype(DType::I64)?.to_vec2::<i64>()?;
        let eos = self.config.eos_token_id;
        let rows = ids
            .iter()
            .enumerate()
            .map(|(b, row)| {
                let p = if eos == 2 {
                    row.iter()
                        .enumerate()
                        .max_by_key(|(i, &id)| (id, std::cmp::Reverse(*i)))
                        .map(|(i, _)| i)
                        .unwrap_or(0)
                } else {
                    row.iter().position(|&id| id == eos).unwrap_or(row.len() - 1)
                };
                hidden.i((b, p))
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }
}
