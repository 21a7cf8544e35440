//! Textual-inversion embeddings: learned rows for placeholder tokens of the first text encoder.
//! Files users exchange:
//! - diffusers `learned_embeds.safetensors`: `{token: (n, D) or (D,)}`, one or more tokens;
//! - A1111 `<name>.safetensors`: `{"emb_params": (n, D)}`, the token being the file's stem.

use crate::model::Model;
use candle_core::{DType, Device, Error, Result, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The layouts `save_embeddings` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFormat {
    Diffusers,
    A1111,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{}: {msg}", path.display()))
}

/// Adds `token` (learned as `rows.dim(0)` vectors) to the first tower's tokenizer and its rows
/// to the encoder. The rows are used as given, so a trainable tensor stays in the graph when
/// it is the encoder's only learned rows.
pub fn attach_tokens(model: &mut Model, token: &str, rows: &Tensor) -> Result<Vec<u32>> {
    let tower = &mut model.text[0];
    let d = tower.encoder.config.hidden_size;
    let rows = if rows.rank() == 1 { rows.unsqueeze(0)? } else { rows.clone() };
    if rows.rank() != 2 || rows.dim(1)? != d {
        candle_core::bail!("embedding for `{token}` has shape {:?}; this text encoder needs (n, {d})", rows.dims());
    }
    if is_vocabulary_word(&tower.tokenizer, token)? {
        candle_core::bail!(
            "`{token}` is already a word of this vocabulary: a textual inversion needs a new token (e.g. <{token}>)"
        );
    }
    let existing = tower.encoder.extra_rows();
    let have = existing.as_ref().map(|e| e.dim(0)).transpose()?.unwrap_or(0);
    let ids = tower.tokenizer.add_placeholder(token, rows.dim(0)?)?;
    let first = tower.tokenizer.base_vocab + have;
    if ids.iter().enumerate().any(|(i, &id)| id as usize != first + i) {
        candle_core::bail!("`{token}` was already added to the tokenizer; load each embedding once");
    }
    let all = match existing {
        Some(e) => Tensor::cat(&[&e, &rows.to_dtype(e.dtype())?], 0)?,
        None => rows.to_dtype(DType::F32)?,
    };
    tower.encoder.set_extra_rows(Some(all))?;
    Ok(ids)
}

/// Is `token` one word of the base vocabulary (so a learned row could not be told apart)?
pub fn is_vocabulary_word(tok: &crate::tokenizer::ClipTokenizer, token: &str) -> Result<bool> {
    let ids = tok.tokens(token)?;
    Ok(ids.len() == 1 && (ids[0] as usize) < tok.base_vocab)
}

/// Writes `{token: rows, ..}` (diffusers: any number of tokens) or `{"emb_params": rows}`
/// (A1111: one token, named in the metadata), atomically.
pub fn save_embeddings(path: &Path, tokens: &[(String, Tensor)], format: EmbeddingFormat) -> Result<()> {
    match (format, tokens) {
        (EmbeddingFormat::Diffusers, _) => super::write_safetensors(path, tokens, None),
        (EmbeddingFormat::A1111, [(token, rows)]) => super::write_safetensors(
            path,
            &[("emb_params".to_string(), rows.clone())],
            Some(HashMap::from([("name".to_string(), token.clone())])),
        ),
        (EmbeddingFormat::A1111, _) => Err(bad(path, "an A1111 embedding file holds exactly one token")),
    }
}

/// (token, rows) pairs of an embedding file of either layout.
pub fn read_embeddings(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let w = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| bad(path, format!("not a readable safetensors embedding file ({e})")))?;
    if let Some(rows) = w.get("emb_params") {
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        return Ok(vec![(stem, rows.to_dtype(DType::F32)?)]);
    }
    let mut out: Vec<(String, Tensor)> =
        w.into_iter().map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?))).collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.is_empty() || out.iter().any(|(_, v)| v.rank() > 2) {
        return Err(bad(path, "expected token embeddings ({token: (n, D)} or {\"emb_params\": (n, D)})"));
    }
    Ok(out)
}

/// Is this a textual-inversion file (and not another adapter)?
pub fn is_embedding_file(keys: &[String]) -> bool {
    keys.iter().any(|k| k == "emb_params") || keys.iter().all(|k| !k.contains('.'))
}

/// Loads every token of an embedding file into the model; returns the tokens.
pub fn load_embeddings(path: &Path, model: &mut Model) -> Result<Vec<String>> {
    let mut tokens = vec![];
    for (token, rows) in read_embeddings(path)? {
        attach_tokens(model, &token, &rows.to_device(&model.device)?).map_err(|e| bad(path, e))?;
        tokens.push(token);
    }
    Ok(tokens)
}
