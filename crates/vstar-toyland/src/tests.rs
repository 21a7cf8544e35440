//! Crate tests: determinism, masks, attribute visibility, grammar coverage, ToyBooth
//! separation and the tokenizer.

use crate::caption::{canonical, caption, grammar_words, Elements, MentionSet};
use crate::context::{Accessory, ColorMod, Context, Material, Scene, Style};
use crate::instance::Instance;
use crate::polluted::POLLUTED;
use crate::render::render;
use crate::spec::SceneSpec;
use crate::superclass::Superclass;
use crate::toybooth::{manifest, ToyBooth};
use crate::training::sample_training_pair;
use crate::vocab::{self, clip_tokenizer, write_tokenizer_files, UNSEEN_RARE};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

fn inst(sc: Superclass, seed: u64) -> Instance {
    Instance::sample(sc, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Pixels whose colour moved by more than 60 (sum over channels).
fn changed_pixels(a: &RgbImage, b: &RgbImage) -> usize {
    a.pixels()
        .zip(b.pixels())
        .filter(|(p, q)| (0..3).map(|k| (p.0[k] as i32 - q.0[k] as i32).abs()).sum::<i32>() > 60)
        .count()
}

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-toyland-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn same_spec_same_pixels() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for k in 0..24u64 {
        let sc = Superclass::ALL[k as usize % 8];
        let spec = SceneSpec::new(inst(sc, k), Context::sample_uniform(&mut rng), k);
        for size in [32, 64, 128] {
            let (a, b) = (render(&spec, size), render(&spec, size));
            assert_eq!(a.image, b.image);
            assert_eq!(a.mask, b.mask);
            assert_eq!(a.image.dimensions(), (size, size));
        }
    }
}

#[test]
fn masks_are_nonempty_and_the_subject_stays_in_frame() {
    for (k, &sc) in Superclass::ALL.iter().enumerate() {
        for &accessory in Accessory::ALL {
            for seed in 0..12u64 {
                let i = inst(sc, seed * 31 + k as u64);
                let ctx = Context { accessory, ..Context::default() };
                let r = render(&SceneSpec::new(i, ctx, seed), 64);
                let m = &r.mask;
                let covered = m.pixels().filter(|p| p.0[0] > 127).count();
                assert!(covered > 64 * 64 / 20, "{sc:?} {accessory:?}: tiny mask {covered}");
                assert!(covered < 64 * 64 * 2 / 3, "{sc:?}: mask covers the frame");
                // Nothing cut off at the top or the sides.
                for j in 0..64 {
                    for (x, y) in [(j, 0), (0, j), (63, j)] {
                        assert!(m.get_pixel(x, y).0[0] < 64, "{sc:?} {accessory:?} touches the border");
                    }
                }
            }
        }
    }
}

#[test]
fn every_attribute_value_changes_the_pixels() {
    for &sc in &Superclass::ALL {
        let base_spec = SceneSpec::new(inst(sc, 7), Context::default(), 3);
        let base = render(&base_spec, 32).image;
        let with = |f: &dyn Fn(&mut Context)| {
            let mut s = base_spec.clone();
            f(&mut s.context);
            render(&s, 32).image
        };
        // At 32 px (1024 pixels): how many pixels visibly change, per attribute value.
        let check = |what: String, img: RgbImage, min: usize| {
            let n = changed_pixels(&base, &img);
            assert!(n >= min, "{sc:?} {what}: only {n} pixels change");
        };
        for &v in &Scene::ALL[1..] {
            check(format!("{v:?}"), with(&|c| c.scene = v), 300);
        }
        for &v in &ColorMod::ALL[1..] {
            check(format!("{v:?}"), with(&|c| c.color = v), 40);
        }
        for &v in &Accessory::ALL[1..] {
            check(format!("{v:?}"), with(&|c| c.accessory = v), 10);
        }
        for &v in &Material::ALL[1..] {
            check(format!("{v:?}"), with(&|c| c.material = v), 15);
        }
        for &v in &Style::ALL[1..] {
            check(format!("{v:?}"), with(&|c| c.style = v), 150);
        }
    }
}

#[test]
fn captions_say_every_value_and_training_covers_the_grammar() {
    let i = inst(Superclass::Dog, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for &scene in Scene::ALL {
        for &accessory in Accessory::ALL {
            for &style in Style::ALL {
                let ctx = Context { scene, accessory, style, color: ColorMod::Purple, material: Material::Wet };
                let c = caption(&SceneSpec::new(i.clone(), ctx, 0), &MentionSet::all(), &mut rng);
                assert!(c.contains("dog") && c.contains("purple") && c.contains("wet"), "{c}");
                let s = crate::caption::scene_phrases(scene);
                assert!(s.iter().any(|p| c.contains(p)), "{c}");
                let st = crate::caption::style_phrases(style);
                assert!(st.iter().any(|p| c.starts_with(p)), "{c}");
                if accessory != Accessory::None {
                    let a = crate::caption::accessory_phrases(accessory);
                    assert!(a.iter().any(|p| c.contains(p)), "{c}");
                }
            }
        }
    }
    let words: HashSet<String> = grammar_words().into_iter().collect();
    let mut seen = HashSet::new();
    let mut polluted = 0;
    for seed in 0..4000 {
        let p = sample_training_pair(seed);
        polluted += p.polluted.is_some() as usize;
        for w in p.caption.split_whitespace() {
            let known = words.contains(w) || POLLUTED.iter().any(|q| q.token == w);
            assert!(known, "unknown word {w} in {}", p.caption);
            seen.insert(w.to_string());
        }
    }
    let missing: Vec<_> = words.iter().filter(|w| !seen.contains(*w)).collect();
    assert!(missing.is_empty(), "grammar words never sampled: {missing:?}");
    assert!((40..250).contains(&polluted), "polluted share off: {polluted}/4000");
}

#[test]
fn canonical_prompts_read_right() {
    let e = Elements { scene: Some(Scene::Snow), ..Elements::default() };
    assert_eq!(canonical(&e, Some("dog"), Some("sks")), "a sks dog in the snow");
    assert_eq!(canonical(&e, Some("dog"), None), "a dog in the snow");
    let e = Elements {
        style: Some(Style::OilPainting),
        color: Some(ColorMod::Orange),
        accessory: Some(Accessory::Sunglasses),
        ..Elements::default()
    };
    assert_eq!(canonical(&e, Some("cat"), None), "an oil painting of an orange cat wearing sunglasses");
}

/// Every caption the grammar writes (any wording, any order) parses back to its elements.
#[test]
fn captions_parse_back_to_their_elements() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..2000 {
        let p = sample_training_pair(i);
        let mention = MentionSet::random(&mut rng, 0.6).with_token("sks");
        let text = caption(&p.spec, &mention, &mut rng);
        assert_eq!(Elements::parse(&text), Elements::of(&p.spec, &mention), "{text}");
    }
    let e = Elements::parse("A watercolor painting of sks dog wearing a red hat in the desert");
    assert_eq!(
        (e.style, e.accessory, e.scene, e.color),
        (Some(Style::Watercolor), Some(Accessory::RedHat), Some(Scene::Desert), None)
    );
}

#[test]
fn toybooth_subjects_are_never_sampled_for_training() {
    let tb = manifest();
    assert_eq!(tb.subjects.len(), 16);
    for sc in Superclass::ALL {
        assert_eq!(tb.subjects.iter().filter(|s| s.superclass == sc).count(), 2);
    }
    for s in &tb.subjects {
        assert!(s.instance.is_reserved(), "{} not in the reserved region", s.name);
        assert_eq!(s.references.len(), 5);
        for r in &s.references {
            assert_eq!(r.context.style, Style::Photo);
            assert_eq!(r.context.accessory, Accessory::None);
            assert_eq!(r.instance, s.instance);
        }
    }
    let names: HashSet<_> = tb.subjects.iter().map(|s| &s.name).collect();
    assert_eq!(names.len(), 16);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for k in 0..20000 {
        let i = Instance::sample(Superclass::ALL[k % 8], &mut rng);
        assert!(!i.is_reserved());
    }
    for seed in 0..20000 {
        let p = sample_training_pair(seed);
        assert!(!p.spec.instance.is_reserved(), "training pair {seed} uses a held-out look");
    }
    for p in POLLUTED {
        assert!(!p.instance().is_reserved());
    }
}

#[test]
fn toybooth_manifest_round_trips_and_prompts_fit() {
    let tb = manifest();
    let json = serde_json::to_string(&tb).expect("serialize");
    let back: ToyBooth = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, tb);
    let lens: Vec<_> = tb.prompt_lists.iter().map(|l| l.prompts.len()).collect();
    assert_eq!(lens, vec![25, 31, 10]);
    for p in &tb.prompt_lists[2].prompts {
        assert!(p.elements.count() >= 3, "{}", p.template);
        assert!(!(p.elements.style == Some(Style::Sketch) && p.elements.color.is_some()));
    }
    for l in &tb.prompt_lists {
        for p in &l.prompts {
            assert!(p.template.contains("{token} {class}"), "{}", p.template);
        }
    }
    let dir = tmp_dir("refs");
    let written = crate::toybooth::write_references(&dir, 32).expect("references");
    assert_eq!(written.len(), 80);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tokenizer_has_clip_layout_and_one_token_per_word() {
    let dir = tmp_dir("tok");
    let files = write_tokenizer_files(&dir).expect("tokenizer files");
    assert!(files.vocab_size < 2000, "vocab too big: {}", files.vocab_size);
    let merges = std::fs::read_to_string(&files.merges).expect("merges");
    assert!(merges.starts_with("#version: 0.2\n"));
    let vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&files.vocab).expect("vocab")).expect("json");
    assert_eq!(vocab.len(), files.vocab_size);
    let id = |t: &str| vocab[t].as_u64().expect("id") as usize;
    assert_eq!(id("!"), 0);
    assert_eq!(id("!</w>"), 256);
    assert_eq!(id("a"), 64, "CLIP's id for 'a'");
    assert_eq!(id("a</w>"), 320, "CLIP's id for 'a</w>'");
    assert_eq!(id(vocab::START_OF_TEXT), files.vocab_size - 2);
    assert_eq!(id(vocab::END_OF_TEXT), files.vocab_size - 1);

    let tok = clip_tokenizer(&files).expect("tokenizer");
    let eot = id(vocab::END_OF_TEXT) as u32;
    let mut texts: Vec<String> = (0..3000).map(|s| sample_training_pair(s).caption).collect();
    for l in manifest().prompt_lists {
        for p in l.prompts {
            for sc in Superclass::ALL {
                texts.push(p.text(sc, Some("sks")));
                texts.push(p.text(sc, None));
            }
        }
    }
    for t in UNSEEN_RARE.iter().chain(POLLUTED.iter().map(|p| &p.token)) {
        texts.push(format!("a photo of {t} dog"));
    }
    texts.push("A  Photo of V* DOG\tin the snow".to_string());
    for t in &texts {
        let enc = tok.encode(t.as_str(), true).expect("encode");
        let ids = enc.get_ids();
        assert_eq!(ids[0] as usize, id(vocab::START_OF_TEXT));
        assert_eq!(*ids.last().expect("ids"), eot);
        let inner = &ids[1..ids.len() - 1];
        assert!(!inner.contains(&eot), "unknown token in {t:?}: {:?}", enc.get_tokens());
        let lower = t.to_lowercase();
        let n_words =
            lower.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).count() + lower.matches('*').count();
        assert_eq!(inner.len(), n_words, "{t:?} -> {:?}", enc.get_tokens());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shipped_assets_match_the_generators() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/toyland");
    let dir = tmp_dir("assets");
    crate::write_assets(&dir).expect("assets");
    for f in ["tokenizer/vocab.json", "tokenizer/merges.txt", "toybooth.json"] {
        let want = std::fs::read(dir.join(f)).expect("generated");
        let have = std::fs::read(shipped.join(f)).unwrap_or_default();
        assert!(
            want == have,
            "assets/toyland/{f} is stale: run `cargo run -p vstar-toyland --release --example assets`"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
