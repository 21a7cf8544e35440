//! `vstar toyland check`: the figures that say whether a pretrained Toyland is fit for use -
//! oracle accuracy (renders and VAE round-trips), identity retrieval on ToyBooth subjects,
//! the base model's prompt following with CFG, sampling time, whether the UNet reads the class
//! word, and polluted vs unseen tokens.
//! Everything is drawn from fixed seeds that pretraining never used.

use crate::judges::{element_hits, Hit, Judges, SIDE};
use candle_core::{Device, Result, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use vstar_diffusion::guidance::{Cfg, PromptKind};
use vstar_diffusion::{pipeline, sampler};
use vstar_nn::model::Model;
use vstar_toyland::caption::{canonical, Elements, MentionSet};
use vstar_toyland::context::Context;
use vstar_toyland::instance::Instance;
use vstar_toyland::labels::Labels;
use vstar_toyland::pretrain::{class_name, data, oracle_targets, HEADS};
use vstar_toyland::spec::SceneSpec;
use vstar_toyland::superclass::Superclass;
use vstar_toyland::{manifest, POLLUTED};

/// Seeds of the check's own data stream (pretraining uses stages 1..16 and their offsets).
const CHECK_STREAM: u64 = 0xC4EC;
pub const GUIDANCE: f64 = 5.0;
pub const STEPS: usize = 30;

/// How big the check is; `quick` for tests.
#[derive(Debug, Clone, Copy)]
pub struct CheckSize {
    pub renders: usize,
    pub queries_per_subject: usize,
    pub prompts: usize,
    pub images_per_prompt: usize,
    pub token_images: usize,
    /// Unseen rare tokens scanned beside the polluted ones (the flag needs a field of them).
    pub unseen_tokens: usize,
}

impl CheckSize {
    pub fn full() -> Self {
        Self {
            renders: 480,
            queries_per_subject: 6,
            prompts: 96,
            images_per_prompt: 2,
            token_images: 8,
            unseen_tokens: 40,
        }
    }
    pub fn quick() -> Self {
        Self { renders: 8, queries_per_subject: 1, prompts: 2, images_per_prompt: 1, token_images: 2, unseen_tokens: 3 }
    }
}

fn pct(hits: usize, n: usize) -> String {
    if n == 0 {
        "-".into()
    } else {
        format!("{:.1}% ({hits}/{n})", 100.0 * hits as f64 / n as f64)
    }
}

/// Held-out renders: half fresh generic instances, half reserved-region (ToyBooth-like)
/// instances, in uniformly drawn contexts.
pub fn held_out(n: usize) -> (Vec<SceneSpec>, Vec<Labels>) {
    (0..n)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(data::item_seed(CHECK_STREAM, 1, 0, i));
            let sc = Superclass::ALL[rng.random_range(0..Superclass::ALL.len())];
            let inst =
                if i % 2 == 0 { Instance::sample(sc, &mut rng) } else { Instance::sample_reserved(sc, &mut rng) };
            let spec = SceneSpec::new(inst, Context::sample_uniform(&mut rng), rng.random());
            let l = Labels::of(&spec);
            (spec, l)
        })
        .unzip()
}

/// Per (head, true or asked class): how often each class was read.
type Reads = BTreeMap<(usize, usize), BTreeMap<usize, usize>>;

/// What the oracle read for each labelled head of each render.
fn oracle_reads(preds: &[Vec<usize>], labels: &[Labels]) -> Reads {
    let mut reads = Reads::new();
    for (p, l) in preds.iter().zip(labels) {
        for (h, t) in oracle_targets(l).iter().enumerate() {
            if let Some(t) = t {
                *reads.entry((h, *t)).or_default().entry(p[h]).or_default() += 1;
            }
        }
    }
    reads
}

/// Per (head, class): (read right, total).
fn class_hits(reads: &Reads) -> BTreeMap<(usize, usize), (usize, usize)> {
    reads.iter().map(|(&(h, c), r)| ((h, c), (r.get(&c).copied().unwrap_or(0), r.values().sum()))).collect()
}

/// The class most often read in place of `class` of `head`, with its count ("-" if none).
fn read_instead(reads: &Reads, head: usize, class: usize) -> String {
    reads
        .get(&(head, class))
        .and_then(|r| r.iter().filter(|(&k, _)| k != class).max_by_key(|(_, &c)| c))
        .map(|(&k, &c)| format!("{} ({c})", class_name(head, k)))
        .unwrap_or_else(|| "-".into())
}

/// Per-head figures: per-class (hits, n) counts summed over each head's classes.
fn head_accuracy(by_class: &BTreeMap<(usize, usize), (usize, usize)>) -> Vec<(usize, usize)> {
    let mut acc = vec![(0usize, 0usize); HEADS.len()];
    for (&(h, _), &(hits, n)) in by_class {
        acc[h].0 += hits;
        acc[h].1 += n;
    }
    acc
}

fn in_chunks<T>(x: &Tensor, chunk: usize, mut f: impl FnMut(&Tensor) -> Result<Vec<T>>) -> Result<Vec<T>> {
    let mut out = vec![];
    let n = x.dim(0)?;
    for s in (0..n).step_by(chunk) {
        out.extend(f(&x.narrow(0, s, chunk.min(n - s))?)?);
    }
    Ok(out)
}

pub fn run(model_dir: &Path, size: CheckSize, out: &mut dyn FnMut(&str)) -> Result<()> {
    let dev = Device::Cpu;
    let model = Model::load(model_dir, &dev)?;
    let judges = Judges::load(model_dir, &dev)?;

    // 1. Oracles on held-out renders and on their VAE round trips.
    let (specs, labels) = held_out(size.renders);
    let x = ((data::images(&specs, &dev)? + 1.0)? / 2.0)?;
    let on_renders = in_chunks(&x, 64, |c| judges.attributes(c))?;
    let round = in_chunks(&x, 64, |c| Ok(vec![sampler::decode(&model, &sampler::encode(&model, c)?)?]))?;
    let round = Tensor::cat(&round, 0)?;
    let on_round = in_chunks(&round, 64, |c| judges.attributes(c))?;
    out(&format!("## Attribute oracle on {} held-out renders (half reserved-region instances)", size.renders));
    out("| head | renders | VAE round trips |\n|---|---|---|");
    let (reads, reads_round) = (oracle_reads(&on_renders, &labels), oracle_reads(&on_round, &labels));
    let (by_class, by_class_round) = (class_hits(&reads), class_hits(&reads_round));
    for (h, ((a, n), (b, m))) in head_accuracy(&by_class).into_iter().zip(head_accuracy(&by_class_round)).enumerate() {
        out(&format!("| {} | {} | {} |", HEADS[h].0, pct(a, n), pct(b, m)));
    }
    out("\n### Classes read right in under 95% of renders or round trips, and what was read most often instead");
    out("| head | class | renders | read instead | VAE round trips | read instead |\n|---|---|---|---|---|---|");
    for (&(h, c), &(a, n)) in &by_class {
        let (b, m) = by_class_round.get(&(h, c)).copied().unwrap_or((0, n));
        if a * 100 < 95 * n || b * 100 < 95 * m {
            out(&format!(
                "| {} | {} | {} | {} | {} | {} |",
                HEADS[h].0,
                class_name(h, c),
                pct(a, n),
                read_instead(&reads, h, c),
                pct(b, m),
                read_instead(&reads_round, h, c)
            ));
        }
    }

    // 2. Identity retrieval: each query render's nearest subject centroid (ToyBooth references).
    let tb = manifest();
    let mut centroids = vec![];
    for s in &tb.subjects {
        let r = ((data::images(&s.references, &dev)? + 1.0)? / 2.0)?;
        centroids.push(judges.identity(&r)?.mean(0)?);
    }
    let centroids = vstar_toyland::pretrain::contrastive::normalize(&Tensor::stack(&centroids, 0)?)?;
    let (mut hits, mut total, mut same_class_hits, mut same_class_total) = (0, 0, 0, 0);
    for (si, s) in tb.subjects.iter().enumerate() {
        let queries: Vec<SceneSpec> = (0..size.queries_per_subject)
            .map(|q| {
                let mut rng = ChaCha8Rng::seed_from_u64(data::item_seed(CHECK_STREAM, 2, si, q));
                SceneSpec::new(s.instance.clone(), Context::sample_uniform(&mut rng), rng.random())
            })
            .collect();
        let e = judges.identity(&((data::images(&queries, &dev)? + 1.0)? / 2.0)?)?;
        let sims = e.matmul(&centroids.t()?)?;
        let best = sims.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for b in best {
            total += 1;
            hits += (b as usize == si) as usize;
            // The harder question: against the other subject of the same superclass only.
            if tb.subjects[b as usize].superclass == s.superclass {
                same_class_total += 1;
                same_class_hits += (b as usize == si) as usize;
            }
        }
    }
    out(&format!(
        "\n## Identity oracle: top-1 retrieval over {} ToyBooth subjects\n{} (queries whose nearest subject had the same superclass: {})",
        tb.subjects.len(),
        pct(hits, total),
        pct(same_class_hits, same_class_total)
    ));

    // 3. The base model with CFG on held-out prompt combinations.
    let cfg = Cfg { scale: GUIDANCE };
    let mut all_present = (0, 0);
    let mut per_value = Reads::new();
    for p in 0..size.prompts {
        let mut rng = ChaCha8Rng::seed_from_u64(data::item_seed(CHECK_STREAM, 3, p, 0));
        let sc = Superclass::ALL[p % Superclass::ALL.len()];
        let ctx = Context::sample_uniform(&mut rng);
        let spec = SceneSpec::new(Instance::sample(sc, &mut rng), ctx, 0);
        let el = Elements::of(&spec, &MentionSet::random(&mut rng, 0.6));
        let prompt = canonical(&el, Some(sc.word()), None);
        let mut by_kind = BTreeMap::new();
        by_kind.insert(PromptKind::Concept, pipeline::encode_prompt(&model, &prompt)?);
        let (imgs, _) = pipeline::txt2img(&model, &cfg, by_kind, size.images_per_prompt, 1000 + p as u64, STEPS)?;
        for pred in judges.attributes(&imgs)? {
            let hits = element_hits(&pred, sc, &el);
            all_present.1 += 1;
            all_present.0 += hits.iter().all(Hit::ok) as usize;
            for h in hits {
                *per_value.entry((h.head, h.asked)).or_default().entry(h.read).or_default() += 1;
            }
        }
    }
    // (head, asked class) -> (present, asked); each element's figure is their sum over its values.
    let present = class_hits(&per_value);
    let mut per_element: Vec<(&str, (usize, usize))> = head_accuracy(&present)
        .into_iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(h, counts)| (HEADS[h].0, counts))
        .collect();
    per_element.sort_by_key(|(name, _)| *name);
    out(&format!(
        "\n## Base model, {} held-out prompts x {} images, DDIM {STEPS} steps, CFG {GUIDANCE}\n| element | present |\n|---|---|",
        size.prompts, size.images_per_prompt
    ));
    for (k, (a, n)) in per_element {
        out(&format!("| {k} | {} |", pct(a, n)));
    }
    out(&format!("| every element of the prompt | {} |", pct(all_present.0, all_present.1)));
    out("\n### Per asked value: how often present, and what the oracle read most often instead");
    out("| element | asked | present | read instead |\n|---|---|---|---|");
    for &(head, asked) in per_value.keys() {
        let (a, n) = present[&(head, asked)];
        let instead = read_instead(&per_value, head, asked);
        out(&format!("| {} | {} | {} | {instead} |", HEADS[head].0, class_name(head, asked), pct(a, n)));
    }

    // 4. Time for one image, 30 DDIM steps with CFG (after one warm-up image).
    let mut by_kind = BTreeMap::new();
    by_kind.insert(PromptKind::Concept, pipeline::encode_prompt(&model, "a photo of a dog in the snow")?);
    pipeline::txt2img(&model, &cfg, by_kind.clone(), 1, 0, STEPS)?;
    let t0 = Instant::now();
    let reps = 3;
    for r in 0..reps {
        pipeline::txt2img(&model, &cfg, by_kind.clone(), 1, r, STEPS)?;
    }
    out(&format!(
        "\n## Sampling time\none {SIDE}x{SIDE} image, DDIM {STEPS} steps, CFG: {:.3} s (mean of {reps}, {} threads)",
        t0.elapsed().as_secs_f64() / reps as f64,
        candle_core::utils::get_num_threads()
    ));

    // 5. Whether the UNet reads the class word at all (cheap, and decisive when superclass fails).
    let n = (size.prompts * 2).max(4);
    out(&format!(
        "\n## Does the UNet read the class word? Denoising loss on {n} captioned renders\n\
         | t | true caption | class word swapped | empty caption |\n|---|---|---|---|"
    ));
    for (t, right, swapped, empty) in crate::word_use::measure(&model, n, CHECK_STREAM << 8)? {
        out(&format!("| {t} | {right:.5} | {swapped:.5} | {empty:.5} |"));
    }

    // 6. Polluted tokens render their fixed look; unseen ones vary (`vstar tokens scan`'s scan).
    out(&format!(
        "\n## Rare tokens: mean pairwise SSIM of {} images of \"a photo of TOKEN\" (CFG {}), best placeholder first",
        size.token_images,
        crate::token_scan::GUIDANCE
    ));
    out("| rank | token | kind | mean pairwise SSIM | modified z | flagged |\n|---|---|---|---|---|---|");
    let unseen = &vstar_toyland::vocab::UNSEEN_RARE[..size.unseen_tokens.min(vstar_toyland::vocab::UNSEEN_RARE.len())];
    let tokens: Vec<String> =
        POLLUTED.iter().map(|p| p.token).chain(unseen.iter().copied()).map(String::from).collect();
    let scores =
        crate::token_scan::scan(&model, &tokens, size.token_images, STEPS, crate::token_scan::GUIDANCE, &mut |_| {})?;
    for (i, s) in scores.iter().enumerate() {
        let kind = if POLLUTED.iter().any(|p| p.token == s.token) { "polluted" } else { "unseen" };
        let z = s.z.map(|z| format!("{z:.2}")).unwrap_or_else(|| "-".into());
        out(&format!("| {} | {} | {kind} | {:.3} | {z} | {} |", i + 1, s.token, s.mean_pairwise_ssim, s.polluted));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-class counts: an oracle that reads every label right scores each class n/n and has
    /// nothing read instead; one wrong superclass read costs exactly that item's class one hit,
    /// is named as what was read instead, and the head totals are the sums.
    #[test]
    fn reads_count_each_true_class_and_name_the_misread() {
        let (_, labels) = held_out(24);
        let mut preds: Vec<Vec<usize>> =
            labels.iter().map(|l| oracle_targets(l).iter().map(|t| t.unwrap_or(0)).collect()).collect();
        let perfect = oracle_reads(&preds, &labels);
        assert!(class_hits(&perfect).values().all(|&(right, n)| right == n && n > 0));
        assert!(perfect.keys().all(|&(h, c)| read_instead(&perfect, h, c) == "-"));
        let wrong_class = oracle_targets(&labels[0])[0].unwrap();
        let read = (wrong_class + 1) % HEADS[0].1;
        preds[0][0] = read;
        let one_off = oracle_reads(&preds, &labels);
        for (k, &(right, n)) in &class_hits(&one_off) {
            let expect = if *k == (0, wrong_class) { n - 1 } else { n };
            assert_eq!(right, expect, "{k:?}");
        }
        assert_eq!(read_instead(&one_off, 0, wrong_class), format!("{} (1)", class_name(0, read)));
        let heads = head_accuracy(&class_hits(&one_off));
        assert_eq!(heads[0], (23, 24));
        assert_eq!(heads.iter().map(|h| h.1).sum::<usize>(), class_hits(&one_off).values().map(|v| v.1).sum::<usize>());
    }

    /// Every class of every head has a name, distinct within its head, and it is the name of the
    /// attribute that head judges (a render's label names its own classes).
    #[test]
    fn class_names_are_distinct_and_match_the_labels() {
        for (h, &(head, n)) in HEADS.iter().enumerate() {
            let names: std::collections::BTreeSet<_> = (0..n).map(|i| class_name(h, i)).collect();
            assert_eq!(names.len(), n, "{head}");
        }
        let (_, labels) = held_out(64);
        for l in &labels {
            let t = oracle_targets(l);
            let own = [
                l.superclass.word(),
                l.scene.name(),
                l.color.name(),
                l.accessory.name(),
                l.material.name(),
                l.style.name(),
            ];
            for h in 0..HEADS.len() {
                if let Some(c) = t[h] {
                    assert_eq!(class_name(h, c), own[h], "{}", HEADS[h].0);
                }
            }
        }
    }
}
