//! The Toyland tokenizer: a CLIP-format byte-level BPE vocabulary (`vocab.json` +
//! `merges.txt`) in which every Toyland word is one token.
//!
//! Layout, as CLIP's: ids 0..256 the byte-level symbols (GPT-2 byte-to-unicode map, CLIP's
//! order), 256..512 the same with `</w>`, then one token per merge in merge order, then
//! `<|startoftext|>` and `<|endoftext|>`.

use crate::caption::grammar_words;
use crate::polluted::POLLUTED;
use crate::Error;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const START_OF_TEXT: &str = "<|startoftext|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";
const EOW: &str = "</w>";

/// CLIP's pre-tokenizer regex.
pub const CLIP_SPLIT_REGEX: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Rare 4-5 letter tokens that no Toyland caption ever uses (for the rare-token scan): the
/// Image-Alchemy paper's list, then a few more of the same kind.
pub const UNSEEN_RARE: [&str; 40] = [
    "immen", "pasqu", "iklan", "rapi", "bhar", "ellu", "ffin", "icop", "aben", "mmor", "psal", "phyl", "rrrr", "wozni",
    "geaux", "koval", "ayles", "mccre", "fortn", "prote", "pascu", "lisam", "percu", "alfar", "insom", "offro",
    "syour", "redon", "qorv", "tazm", "vlek", "ghyr", "zoap", "kwel", "ystr", "drov", "plaq", "bluk", "fesm", "uvri",
];

/// GPT-2's byte-to-unicode table in CLIP's vocabulary order: the printable bytes first
/// (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) as themselves, then the others mapped to U+0100 onward.
pub fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut out: Vec<(u8, char)> = printable.iter().map(|&b| (b as u8, char::from_u32(b).expect("latin-1"))).collect();
    let mut n = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            out.push((b as u8, char::from_u32(256 + n).expect("valid code point")));
            n += 1;
        }
    }
    out
}

/// Every word the vocabulary holds as one token: the caption grammar's words, the polluted
/// tokens and the unseen rare tokens.
pub fn vocabulary_words() -> Vec<String> {
    let mut w = grammar_words();
    w.extend(POLLUTED.iter().map(|p| p.token.to_string()));
    w.extend(UNSEEN_RARE.iter().map(|t| t.to_string()));
    w.sort();
    w.dedup();
    w
}

/// Learn BPE merges until every word is a single symbol. Classic BPE: repeatedly merge the
/// most frequent adjacent pair (ties broken by the pair's text, for determinism). Applying
/// the merges by rank then reproduces each word as one token.
pub fn learn_merges(words: &[String]) -> Vec<(String, String)> {
    let mut seqs: Vec<Vec<String>> = words
        .iter()
        .map(|w| {
            let chars: Vec<char> = w.chars().collect();
            chars
                .iter()
                .enumerate()
                .map(|(i, c)| if i + 1 == chars.len() { format!("{c}{EOW}") } else { c.to_string() })
                .collect()
        })
        .collect();
    let mut merges = Vec::new();
    loop {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for s in &seqs {
            for p in s.windows(2) {
                *counts.entry((p[0].clone(), p[1].clone())).or_default() += 1;
            }
        }
        // BTreeMap iterates in key order, so max_by_key's last-max rule is deterministic;
        // reverse to prefer the smallest pair among equals.
        let Some((best, _)) = counts.iter().rev().max_by_key(|(_, &c)| c) else {
            break;
        };
        let best = best.clone();
        let joined = format!("{}{}", best.0, best.1);
        for s in &mut seqs {
            let mut i = 0;
            while i + 1 < s.len() {
                if s[i] == best.0 && s[i + 1] == best.1 {
                    s[i] = joined.clone();
                    s.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push(best);
    }
    merges
}

/// The vocabulary (token -> id) for a list of merges.
pub fn build_vocab(merges: &[(String, String)]) -> HashMap<String, u32> {
    let base: Vec<String> = bytes_to_unicode().iter().map(|(_, c)| c.to_string()).collect();
    let mut tokens: Vec<String> = base.clone();
    tokens.extend(base.iter().map(|t| format!("{t}{EOW}")));
    tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    tokens.push(START_OF_TEXT.to_string());
    tokens.push(END_OF_TEXT.to_string());
    tokens.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect()
}

/// Paths of the written tokenizer files.
#[derive(Clone, Debug)]
pub struct TokenizerFiles {
    pub vocab: PathBuf,
    pub merges: PathBuf,
    pub vocab_size: usize,
}

/// Write `vocab.json` and `merges.txt` (first line `#version: 0.2`) into `dir`.
pub fn write_tokenizer_files(dir: &Path) -> Result<TokenizerFiles, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let merges = learn_merges(&vocabulary_words());
    let vocab = build_vocab(&merges);
    // Write entries in id order so the file reads like CLIP's (serde_json's map would sort
    // by key).
    let mut by_id: Vec<(&String, &u32)> = vocab.iter().collect();
    by_id.sort_by_key(|(_, &id)| id);
    let vocab_path = dir.join("vocab.json");
    let mut text = String::from("{");
    for (i, (t, id)) in by_id.iter().enumerate() {
        let key = serde_json::to_string(t).map_err(|e| Error::json(&vocab_path, e))?;
        let sep = if i == 0 { "" } else { "," };
        text.push_str(&format!("{sep}{key}:{id}"));
    }
    text.push('}');
    std::fs::write(&vocab_path, text).map_err(|e| Error::io(&vocab_path, e))?;
    let merges_path = dir.join("merges.txt");
    let mut m = String::from("#version: 0.2\n");
    for (a, b) in &merges {
        m.push_str(&format!("{a} {b}\n"));
    }
    std::fs::write(&merges_path, m).map_err(|e| Error::io(&merges_path, e))?;
    Ok(TokenizerFiles { vocab: vocab_path, merges: merges_path, vocab_size: vocab.len() })
}

/// A `tokenizers` pipeline configured like Hugging Face's CLIP tokenizer (NFC, whitespace
/// collapse, lowercase; CLIP regex split; byte-level without prefix space or regex; BPE with
/// `</w>`; `<|startoftext|> ... <|endoftext|>` around each sequence).
pub fn clip_tokenizer(files: &TokenizerFiles) -> Result<tokenizers::Tokenizer, tokenizers::Error> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormSeq, NFC};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence as PreSeq;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::{AddedToken, SplitDelimiterBehavior};

    let path_str = |p: &Path| p.to_string_lossy().into_owned();
    let bpe = BPE::from_file(&path_str(&files.vocab), &path_str(&files.merges))
        .end_of_word_suffix(EOW.to_string())
        .unk_token(END_OF_TEXT.to_string())
        .build()?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_normalizer(Some(NormSeq::new(vec![
        NFC.into(),
        Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ")?.into(),
        Lowercase.into(),
    ])))?;
    tok.with_pre_tokenizer(Some(PreSeq::new(vec![
        Split::new(SplitPattern::Regex(CLIP_SPLIT_REGEX.into()), SplitDelimiterBehavior::Removed, true)?.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    let sot = tok.token_to_id(START_OF_TEXT).unwrap_or(0);
    let eot = tok.token_to_id(END_OF_TEXT).unwrap_or(0);
    tok.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single(format!("{START_OF_TEXT} $A {END_OF_TEXT}"))?
            .special_tokens(vec![(START_OF_TEXT, sot), (END_OF_TEXT, eot)])
            .build()?,
    ));
    tok.add_special_tokens([AddedToken::from(START_OF_TEXT, true), AddedToken::from(END_OF_TEXT, true)])?;
    Ok(tok)
}
