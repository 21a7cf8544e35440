//! The CLIP tokenizer against transformers' CLIPTokenizer on the real 49,408-entry vocabulary
//! (tests/fixtures/clip-tokenizer, made by tools/ref/make_pipelines.py).

use std::path::PathBuf;
use vstar_nn::tokenizer::ClipTokenizer;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip-tokenizer")
}

fn tokenizer() -> ClipTokenizer {
    ClipTokenizer::from_files(&dir().join("vocab.json"), &dir().join("merges.txt"), None, 77).unwrap()
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

#[test]
fn sd_ids_for_the_documented_prompt() {
    let ids = tokenizer().encode("a photo of a dog in the snow").unwrap().ids;
    assert_eq!(&ids[..10], &[49406, 320, 1125, 539, 320, 1929, 530, 518, 2583, 49407]);
    assert!(ids[10..].iter().all(|&i| i == 49407));
}

#[test]
fn matches_transformers_on_every_case() {
    let tok = tokenizer();
    let mut bad = vec![];
    for case in cases()["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ours = tok.encode(text).unwrap().ids;
        if ours != ids_of(&case["ids"]) {
            bad.push(text.to_string());
        }
    }
    assert!(bad.is_empty(), "differs from transformers on: {bad:?}");
}

#[test]
fn long_prompts_are_truncated_and_flagged() {
    let long = "a photo of a dog ".repeat(30);
    let e = tokenizer().encode(&long).unwrap();
    assert!(e.truncated);
    assert_eq!(e.ids.len(), 77);
    assert_eq!(e.ids[76], 49407);
    assert!(!tokenizer().encode("a dog").unwrap().truncated);
}

#[test]
fn added_tokens_get_new_ids_and_stay_whole() {
    let c = cases();
    let mut tok = tokenizer();
    let added = &c["added_token_cases"];
    let id = tok.add_token("<v*>").unwrap();
    assert_eq!(id as usize, tok.base_vocab);
    for case in added["cases"].as_array().unwrap() {
        let ours = tok.encode(case["text"].as_str().unwrap()).unwrap().ids;
        assert_eq!(ours, ids_of(&case["ids"]), "{}", case["text"]);
    }
    assert_eq!(tok.find("a photo of <v*> dog", "<v*>").unwrap(), Some(4));
}

#[test]
fn bad_vocabulary_is_named() {
    let d = std::env::temp_dir().join(format!("vstar-tok-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vocab.json"), r#"{"a</w>": 0}"#).unwrap();
    std::fs::write(d.join("merges.txt"), "#version: 0.2\n").unwrap();
    let e =
        ClipTokenizer::from_files(&d.join("vocab.json"), &d.join("merges.txt"), None, 77).err().unwrap().to_string();
    assert!(e.contains("vocab.json") && e.contains("<|startoftext|>"), "{e}");
}

#[test]
fn toyland_vocabulary_loads_with_one_token_per_word() {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/toyland/tokenizer");
    let tok = ClipTokenizer::from_files(&d.join("vocab.json"), &d.join("merges.txt"), None, 77).unwrap();
    for caption in [
        "a photo of a dog in the snow",
        "a sketch of a shiny teapot wearing sunglasses in the jungle",
        "a photo of sks teapot",
    ] {
        let words = caption.split(' ').count();
        assert_eq!(tok.tokens(caption).unwrap().len(), words, "{caption}");
    }
    // Unseen rare tokens from the paper's list are single tokens too.
    assert_eq!(tok.tokens("pasqu").unwrap().len(), 1);
}

/// A placeholder learned as 3 vectors reads as its 3 tokens wherever it stands as a word, and
/// only there (diffusers' multi-vector textual inversion).
#[test]
fn multi_vector_placeholders_expand_as_whole_words() {
    let mut tok = tokenizer();
    let ids = tok.add_placeholder("<cat-toy>", 3).unwrap();
    assert_eq!(ids, vec![49408, 49409, 49410]);
    let base = tok.tokens("a photo of").unwrap();
    let got = tok.tokens("a photo of <cat-toy>, small").unwrap();
    assert_eq!(&got[..base.len()], base.as_slice());
    assert_eq!(&got[base.len()..base.len() + 3], &[49408, 49409, 49410]);
    assert_eq!(tok.find("a <cat-toy> dog", "<cat-toy>").unwrap(), Some(2));
    // One vector: no expansion.
    assert_eq!(tok.add_placeholder("<one>", 1).unwrap(), vec![49411]);
    assert_eq!(tok.tokens("<one>").unwrap(), vec![49411]);
}
