//! Textual inversion's parameters: `n` new embedding rows per placeholder token (read as
//! `tok tok_1 .. tok_{n-1}`), initialised from its class word's embedding as the TI paper and
//! diffusers' script do. A multi-subject run learns one placeholder per subject.

use candle_core::{Result, Tensor, Var};
use std::path::Path;
use vstar_nn::adapters::embeddings::{attach_tokens, is_vocabulary_word, save_embeddings, EmbeddingFormat};
use vstar_nn::model::Model;

pub struct TokenSet {
    /// (placeholder, its rows (n, D)), in the order the subjects were given.
    pub tokens: Vec<(String, Var)>,
}

impl TokenSet {
    /// `subjects`: (placeholder, init word) pairs.
    pub fn attach(model: &mut Model, subjects: &[(String, String)], n: usize) -> Result<Self> {
        if n == 0 {
            candle_core::bail!("--vectors must be at least 1");
        }
        if model.text[0].encoder.extra_rows().is_some() {
            candle_core::bail!("the model already has learned tokens; train a textual inversion on a plain base model");
        }
        let mut tokens = vec![];
        for (token, init_word) in subjects {
            let tok = &model.text[0].tokenizer;
            let init = tok.tokens(init_word)?;
            let Some(&first) = init.first() else {
                candle_core::bail!("--class {init_word:?}: the init word has no tokens");
            };
            if is_vocabulary_word(tok, token)? {
                candle_core::bail!(
                    "--token {token:?} is already a word of this vocabulary; textual inversion (ti, lora-ti, custom) \
                     needs a new token, e.g. --token \"<{token}>\""
                );
            }
            let row = model.text[0].encoder.token_row(first)?;
            let rows = Var::from_tensor(&row.unsqueeze(0)?.repeat((n, 1))?)?;
            attach_tokens(model, token, rows.as_tensor())?;
            tokens.push((token.clone(), rows));
        }
        Ok(Self { tokens })
    }

    pub fn vars(&self) -> Vec<(String, Var, f64)> {
        self.tokens.iter().map(|(t, v)| (format!("token.{t}"), v.clone(), 1.0)).collect()
    }

    /// diffusers' `learned_embeds.safetensors` (every token) and one A1111 file
    /// `<token>.a1111.safetensors` per token.
    pub fn save(&self, out: &Path) -> Result<Vec<std::path::PathBuf>> {
        let rows: Vec<(String, Tensor)> =
            self.tokens.iter().map(|(t, v)| (t.clone(), v.as_tensor().detach())).collect();
        let diffusers = out.join("learned_embeds.safetensors");
        save_embeddings(&diffusers, &rows, EmbeddingFormat::Diffusers)?;
        let mut files = vec![diffusers];
        for (token, t) in rows {
            let stem: String = token.chars().filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
            let a1111 = out.join(format!("{}.a1111.safetensors", if stem.is_empty() { "embedding" } else { &stem }));
            save_embeddings(&a1111, &[(token, t)], EmbeddingFormat::A1111)?;
            files.push(a1111);
        }
        Ok(files)
    }
}
