//! Textual inversion's parameters: `n` new embedding rows for the placeholder token (read as
//! `tok tok_1 .. tok_{n-1}`), initialised from the class word's embedding as the TI paper and
//! diffusers' script do.

use candle_core::{Result, Tensor, Var};
use std::path::Path;
use vstar_nn::adapters::embeddings::{attach_tokens, is_vocabulary_word, save_embeddings, EmbeddingFormat};
use vstar_nn::model::Model;

pub struct TokenSet {
    pub token: String,
    pub rows: Var,
}

impl TokenSet {
    pub fn attach(model: &mut Model, token: &str, init_word: &str, n: usize) -> Result<Self> {
        if n == 0 {
            candle_core::bail!("--vectors must be at least 1");
        }
        if model.text[0].encoder.extra_rows().is_some() {
            candle_core::bail!("the model already has learned tokens; train a textual inversion on a plain base model");
        }
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
        Ok(Self { token: token.to_string(), rows })
    }

    pub fn vars(&self) -> Vec<(String, Var, f64)> {
        vec![(format!("token.{}", self.token), self.rows.clone(), 1.0)]
    }

    pub fn tensor(&self) -> Tensor {
        self.rows.as_tensor().detach()
    }

    /// diffusers' `learned_embeds.safetensors` and the A1111 file `<token>.safetensors`.
    pub fn save(&self, out: &Path) -> Result<Vec<std::path::PathBuf>> {
        let diffusers = out.join("learned_embeds.safetensors");
        save_embeddings(&diffusers, &self.token, &self.tensor(), EmbeddingFormat::Diffusers)?;
        let stem: String = self.token.chars().filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
        let a1111 = out.join(format!("{}.a1111.safetensors", if stem.is_empty() { "embedding" } else { &stem }));
        save_embeddings(&a1111, &self.token, &self.tensor(), EmbeddingFormat::A1111)?;
        Ok(vec![diffusers, a1111])
    }
}
