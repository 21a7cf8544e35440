//! The CLIP BPE tokenizer, built from a folder's `vocab.json` + `merges.txt` with the
//! `tokenizers` crate, configured as Hugging Face's CLIP tokenizer; plus added tokens
//! (placeholders such as "<v*>") that map to learned embedding rows.

use candle_core::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::str::FromStr;
use tokenizers::{AddedToken, Tokenizer};

pub const BOS: &str = "<|startoftext|>";
pub const EOS: &str = "<|endoftext|>";
const CLIP_SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    pub max_length: usize,
    pub bos_id: u32,
    pub eos_id: u32,
    pub pad_id: u32,
    /// Size of the base vocabulary; added tokens get ids from here on.
    pub base_vocab: usize,
    /// Multi-vector placeholders: "tok" is read as "tok tok_1 .. tok_{n-1}" (as diffusers'
    /// textual inversion loader rewrites prompts).
    expansions: Vec<(String, String)>,
}

/// Result of encoding one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Exactly `max_length` ids: BOS, tokens, EOS, padding.
    pub ids: Vec<u32>,
    /// True when the prompt had more tokens than fit (CLIP truncates).
    pub truncated: bool,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Msg(format!("{}: cannot read ({e})", path.display())))
}

/// A special token in tokenizer_config.json / special_tokens_map.json: a string or {"content": ..}.
fn token_string(v: &Value) -> Option<String> {
    v.as_str().map(String::from).or_else(|| v.get("content").and_then(|c| c.as_str()).map(String::from))
}

impl ClipTokenizer {
    /// From a `tokenizer/` folder: vocab.json, merges.txt, and optional special_tokens_map.json,
    /// tokenizer_config.json and added_tokens.json.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut pad = None;
        let mut max_length = 77;
        let stm = dir.join("special_tokens_map.json");
        if stm.exists() {
            let v: Value =
                serde_json::from_str(&read(&stm)?).map_err(|e| Error::Msg(format!("{}: {e}", stm.display())))?;
            pad = v.get("pad_token").and_then(token_string);
        }
        let tc = dir.join("tokenizer_config.json");
        if tc.exists() {
            let v: Value =
                serde_json::from_str(&read(&tc)?).map_err(|e| Error::Msg(format!("{}: {e}", tc.display())))?;
            pad = pad.or_else(|| v.get("pad_token").and_then(token_string));
            if let Some(m) = v.get("model_max_length").and_then(|m| m.as_u64()) {
                // transformers writes a huge sentinel when unset; CLIP's context is 77 then.
                if m < 100_000 {
                    max_length = m as usize;
                }
            }
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let json = dir.join("tokenizer.json");
        // Hub SD folders carry vocab.json + merges.txt; transformers 5 saves only tokenizer.json.
        let mut tok = if vocab.exists() && merges.exists() {
            Self::from_files(&vocab, &merges, pad.as_deref(), max_length)?
        } else if json.exists() {
            let inner = Tokenizer::from_file(&json)
                .map_err(|e| Error::Msg(format!("{}: cannot read the tokenizer ({e})", json.display())))?;
            Self::from_tokenizer(inner, &json, pad.as_deref(), max_length)?
        } else {
            return Err(Error::Msg(format!(
                "{}: no vocab.json + merges.txt or tokenizer.json; a tokenizer folder needs them",
                dir.display()
            )));
        };
        let added = dir.join("added_tokens.json");
        if added.exists() {
            let v: Value =
                serde_json::from_str(&read(&added)?).map_err(|e| Error::Msg(format!("{}: {e}", added.display())))?;
            let mut pairs: Vec<(String, u64)> = v
                .as_object()
                .map(|o| o.iter().filter_map(|(k, id)| id.as_u64().map(|id| (k.clone(), id))).collect())
                .unwrap_or_default();
            pairs.sort_by_key(|p| p.1);
            for (t, _) in pairs {
                tok.add_token(&t)?;
            }
        }
        Ok(tok)
    }

    /// `pad`: the padding token (SD 1.5 pads with `<|endoftext|>`, SD 2.1 with "!").
    pub fn from_files(vocab: &Path, merges: &Path, pad: Option<&str>, max_length: usize) -> Result<Self> {
        let vocab_json: Value = serde_json::from_str(&read(vocab)?)
            .map_err(|e| Error::Msg(format!("{}: invalid vocab JSON ({e})", vocab.display())))?;
        let vmap = vocab_json
            .as_object()
            .ok_or_else(|| Error::Msg(format!("{}: expected a token -> id object", vocab.display())))?;
        let id_of = |t: &str| -> Result<u64> {
            vmap.get(t)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| Error::Msg(format!("{}: has no `{t}` token; not a CLIP vocabulary", vocab.display())))
        };
        let (bos_id, eos_id) = (id_of(BOS)?, id_of(EOS)?);
        let pad_tok = pad.unwrap_or(EOS);
        id_of(pad_tok)?;
        let merges_list: Vec<String> = read(merges)?
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(String::from)
            .collect();
        for (i, m) in merges_list.iter().enumerate() {
            if m.split(' ').count() != 2 {
                return Err(Error::Msg(format!("{}:{}: a merge must be two symbols", merges.display(), i + 1)));
            }
        }
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [
                {"id": bos_id, "content": BOS, "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true},
                {"id": eos_id, "content": EOS, "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true}
            ],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}
            ]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": EOS, "continuing_subword_prefix": "",
                "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                "vocab": vocab_json, "merges": merges_list
            }
        });
        let inner = Tokenizer::from_str(&spec.to_string())
            .map_err(|e| Error::Msg(format!("{}: cannot build the tokenizer ({e})", vocab.display())))?;
        Self::from_tokenizer(inner, vocab, Some(pad_tok), max_length)
    }

    /// Wraps a built tokenizer; `source` names the file in errors. Its own padding and
    /// truncation settings are dropped: `encode` pads and truncates as CLIP does.
    fn from_tokenizer(mut inner: Tokenizer, source: &Path, pad: Option<&str>, max_length: usize) -> Result<Self> {
        let id_of = |t: &str| -> Result<u32> {
            inner
                .token_to_id(t)
                .ok_or_else(|| Error::Msg(format!("{}: has no `{t}` token; not a CLIP vocabulary", source.display())))
        };
        let (bos_id, eos_id, pad_id) = (id_of(BOS)?, id_of(EOS)?, id_of(pad.unwrap_or(EOS))?);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| Error::Msg(format!("{}: {e}", source.display())))?;
        let base_vocab = inner.get_vocab_size(true);
        Ok(Self { inner, max_length, bos_id, eos_id, pad_id, base_vocab, expansions: vec![] })
    }

    /// Adds a whole-word token (a placeholder such as "<v*>"); returns its id.
    pub fn add_token(&mut self, token: &str) -> Result<u32> {
        if let Some(id) = self.inner.token_to_id(token) {
            return Ok(id);
        }
        self.inner
            .add_tokens([AddedToken::from(token.to_string(), false)])
            .map_err(|e| Error::Msg(format!("could not add token `{token}` to the tokenizer ({e})")))?;
        self.inner
            .token_to_id(token)
            .ok_or_else(|| Error::Msg(format!("could not add token `{token}` to the tokenizer")))
    }

    /// Adds a placeholder learned as `n` vectors: `token`, `token_1`, .. `token_{n-1}`; a
    /// prompt's `token` then reads as all of them. Returns their ids in order.
    pub fn add_placeholder(&mut self, token: &str, n: usize) -> Result<Vec<u32>> {
        let names: Vec<String> =
            (0..n.max(1)).map(|i| if i == 0 { token.to_string() } else { format!("{token}_{i}") }).collect();
        let ids = names.iter().map(|t| self.add_token(t)).collect::<Result<Vec<_>>>()?;
        if n > 1 {
            self.expansions.retain(|(t, _)| t != token);
            self.expansions.push((token.to_string(), names.join(" ")));
        }
        Ok(ids)
    }

    /// `text` with every whole-word multi-vector placeholder expanded.
    fn expand(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (tok, exp) in &self.expansions {
            let mut s = String::with_capacity(out.len());
            let mut rest = out.as_str();
            while let Some(i) = rest.find(tok.as_str()) {
                let (before, after) = (&rest[..i], &rest[i + tok.len()..]);
                let word_char = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                let whole = !word_char(before.chars().next_back()) && !word_char(after.chars().next());
                s.push_str(before);
                s.push_str(if whole { exp } else { tok });
                rest = after;
            }
            s.push_str(rest);
            out = s;
        }
        out
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of the text alone, no BOS/EOS, no padding.
    pub fn tokens(&self, text: &str) -> Result<Vec<u32>> {
        let text = self.expand(text);
        let enc = self
            .inner
            .encode(text.as_str(), false)
            .map_err(|e| Error::Msg(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// BOS + tokens + EOS, truncated to the context and padded (what the text encoder reads).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let mut toks = self.tokens(text)?;
        let room = self.max_length - 2;
        let truncated = toks.len() > room;
        toks.truncate(room);
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos_id);
        ids.extend(toks);
        ids.push(self.eos_id);
        ids.resize(self.max_length, self.pad_id);
        Ok(Encoded { ids, truncated })
    }

    /// Whole-word entries of the vocabulary (CLIP marks word ends with `</w>`), without the
    /// marker, sorted: the candidates of a rare-token scan.
    pub fn whole_words(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.inner.get_vocab(false).into_keys().filter_map(|k| k.strip_suffix("</w>").map(String::from)).collect();
        v.sort();
        v
    }

    /// Position (in `encode`'s ids) of the first occurrence of a word's tokens, if present.
    pub fn find(&self, text: &str, word: &str) -> Result<Option<usize>> {
        let ids = self.encode(text)?.ids;
        let w = self.tokens(word)?;
        if w.is_empty() {
            return Ok(None);
        }
        Ok(ids.windows(w.len()).position(|win| win == w.as_slice()))
    }
}
