//! ToyBooth: the personalization benchmark (DreamBooth-dataset style). Held-out subjects,
//! their reference renders, and the prompt lists translated into Toyland's vocabulary.

use crate::caption::{canonical, Elements};
use crate::context::{Accessory, ColorMod, Context, Material, Scene, Style};
use crate::instance::{Instance, MarkKind};
use crate::render::render;
use crate::spec::SceneSpec;
use crate::superclass::Superclass;
use crate::Error;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const REFERENCES_PER_SUBJECT: usize = 5;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToyBooth {
    pub version: u32,
    pub subjects: Vec<Subject>,
    pub prompt_lists: Vec<PromptList>,
}

/// A held-out subject: its instance lies in the reserved region (heart or bolt mark), which
/// the generic training sampler never produces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// e.g. "dog_a"; also the instance id and the reference folder name.
    pub name: String,
    pub superclass: Superclass,
    pub class_word: String,
    pub instance: Instance,
    /// Plain contexts: photo style, studio or wooden floor, natural colour, nothing worn.
    pub references: Vec<SceneSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptList {
    /// "dreambooth", "vico" or "complex".
    pub name: String,
    pub source: String,
    /// Images per (subject, prompt) for Toyland runs.
    pub images_per_prompt: u32,
    /// What the source paper used.
    pub paper_images_per_prompt: u32,
    pub prompts: Vec<Prompt>,
}

/// A prompt and the elements an oracle should find (the superclass always counts too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// With `{token}` and `{class}` placeholders: "a {token} {class} in the snow".
    pub template: String,
    pub elements: Elements,
}

impl Prompt {
    pub fn new(elements: Elements) -> Prompt {
        Prompt { template: canonical(&elements, Some("{class}"), Some("{token}")), elements }
    }

    /// The prompt for `class`, with the subject token ("a sks dog in the snow") or, with
    /// `token = None`, the clean superclass prompt ("a dog in the snow").
    pub fn text(&self, class: Superclass, token: Option<&str>) -> String {
        canonical(&self.elements, Some(class.word()), token)
    }
}

fn el() -> Elements {
    Elements::default()
}
fn scene(s: Scene) -> Elements {
    Elements { scene: Some(s), ..el() }
}

const EVAL_SCENES: [Scene; 9] = [
    Scene::Jungle,
    Scene::Snow,
    Scene::Beach,
    Scene::City,
    Scene::PinkFabric,
    Scene::WoodenFloor,
    Scene::Mountains,
    Scene::NightSky,
    Scene::Desert,
];
const EVAL_ACCESSORIES: [Accessory; 4] =
    [Accessory::RedHat, Accessory::SantaHat, Accessory::RainbowScarf, Accessory::Sunglasses];
const EVAL_STYLES: [Style; 4] = [Style::Sketch, Style::Watercolor, Style::PixelArt, Style::OilPainting];

/// DreamBooth's 25 prompts translated: backgrounds, accessories ("outfits"), colours,
/// materials and styles, one element each.
pub fn dreambooth_prompts() -> Vec<Prompt> {
    let mut v: Vec<Elements> = EVAL_SCENES.iter().map(|&s| scene(s)).collect();
    v.extend(EVAL_ACCESSORIES.iter().map(|&a| Elements { accessory: Some(a), ..el() }));
    v.extend(ColorMod::ALL[1..].iter().map(|&c| Elements { color: Some(c), ..el() }));
    v.extend([Material::Shiny, Material::Wet].map(|m| Elements { material: Some(m), ..el() }));
    v.extend(EVAL_STYLES.iter().map(|&s| Elements { style: Some(s), ..el() }));
    v.into_iter().map(Prompt::new).collect()
}

/// The ViCo list of the guidance paper (31 prompts: mostly backgrounds, then red, purple,
/// shiny, wet) translated: 9 scenes, the 4 appearance prompts, and 18 scene + one-more-element
/// prompts standing in for ViCo's extra background prompts.
pub fn vico_prompts() -> Vec<Prompt> {
    let mut v: Vec<Elements> = EVAL_SCENES.iter().map(|&s| scene(s)).collect();
    v.push(Elements { color: Some(ColorMod::Red), ..el() });
    v.push(Elements { color: Some(ColorMod::Purple), ..el() });
    v.push(Elements { material: Some(Material::Shiny), ..el() });
    v.push(Elements { material: Some(Material::Wet), ..el() });
    for (i, &s) in EVAL_SCENES.iter().enumerate() {
        v.push(Elements { accessory: Some(EVAL_ACCESSORIES[i % 4]), ..scene(s) });
        v.push(Elements { style: Some(EVAL_STYLES[(i + 1) % 4]), ..scene(s) });
    }
    v.into_iter().map(Prompt::new).collect()
}

/// Ten complex prompts (sampling-study appendix H spirit: style + background + outfit at
/// once), 3-4 elements each. Sketches never ask for a colour (a sketch is grayscale).
pub fn complex_prompts() -> Vec<Prompt> {
    use Accessory as A;
    use ColorMod as C;
    use Material as M;
    use Scene as S;
    use Style as Y;
    let e =
        |style, color, material, accessory, scene| Elements { scene: Some(scene), color, accessory, material, style };
    [
        e(Some(Y::OilPainting), None, None, Some(A::SantaHat), S::NightSky),
        e(Some(Y::Watercolor), None, Some(M::Shiny), None, S::City),
        e(Some(Y::PixelArt), Some(C::Red), None, Some(A::Sunglasses), S::Beach),
        e(Some(Y::Sketch), None, Some(M::Wet), Some(A::RainbowScarf), S::Snow),
        e(None, Some(C::Purple), None, Some(A::RedHat), S::Jungle),
        e(Some(Y::Photo), Some(C::Yellow), Some(M::Shiny), None, S::Desert),
        e(Some(Y::OilPainting), Some(C::Blue), None, None, S::Mountains),
        e(Some(Y::PixelArt), None, None, Some(A::SantaHat), S::Snow),
        e(Some(Y::Watercolor), Some(C::Green), Some(M::Wet), None, S::PinkFabric),
        e(Some(Y::Sketch), None, Some(M::Shiny), Some(A::Sunglasses), S::WoodenFloor),
    ]
    .into_iter()
    .map(Prompt::new)
    .collect()
}

/// Seed of a subject's instance; fixed forever (changing it changes the benchmark).
fn subject_seed(sc: Superclass, j: usize) -> u64 {
    0x7B00_0000 + 16 * sc.index() as u64 + j as u64
}

fn subject(sc: Superclass, j: usize) -> Subject {
    let name = format!("{}_{}", sc.word(), ["a", "b"][j]);
    let mut rng = ChaCha8Rng::seed_from_u64(subject_seed(sc, j));
    let mark = MarkKind::RESERVED[j];
    let mut inst = Instance::sample_with_mark(sc, mark, &mut rng);
    // The two subjects of a superclass get different pattern kinds, so they differ at a glance.
    if j == 1 {
        let first = subject_instance_a(sc);
        while inst.pattern.kind_name() == first.pattern.kind_name() {
            inst = Instance::sample_with_mark(sc, mark, &mut rng);
        }
    }
    let inst = inst.with_id(&name);
    let scenes = [Scene::Studio, Scene::WoodenFloor, Scene::Studio, Scene::WoodenFloor, Scene::Studio];
    let references = scenes
        .iter()
        .enumerate()
        .map(|(i, &scene)| {
            SceneSpec::new(inst.clone(), Context { scene, ..Context::default() }, subject_seed(sc, j) * 8 + i as u64)
        })
        .collect();
    Subject { name, superclass: sc, class_word: sc.word().to_string(), instance: inst, references }
}

fn subject_instance_a(sc: Superclass) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(subject_seed(sc, 0));
    Instance::sample_with_mark(sc, MarkKind::RESERVED[0], &mut rng)
}

/// The benchmark: 16 subjects (2 per superclass) and three prompt lists.
pub fn manifest() -> ToyBooth {
    let subjects = Superclass::ALL.iter().flat_map(|&sc| [subject(sc, 0), subject(sc, 1)]).collect();
    ToyBooth {
        version: 1,
        subjects,
        prompt_lists: vec![
            PromptList {
                name: "dreambooth".into(),
                source: "DreamBooth 25 prompts (sampling-study.txt)".into(),
                images_per_prompt: 4,
                paper_images_per_prompt: 10,
                prompts: dreambooth_prompts(),
            },
            PromptList {
                name: "vico".into(),
                source: "ViCo 31 prompts (personalization-guidance.txt, table 14)".into(),
                images_per_prompt: 4,
                paper_images_per_prompt: 8,
                prompts: vico_prompts(),
            },
            PromptList {
                name: "complex".into(),
                source: "10 complex prompts (sampling-study.txt, appendix H)".into(),
                images_per_prompt: 4,
                paper_images_per_prompt: 10,
                prompts: complex_prompts(),
            },
        ],
    }
}

impl ToyBooth {
    pub fn subject(&self, name: &str) -> Option<&Subject> {
        self.subjects.iter().find(|s| s.name == name)
    }

    /// Write the manifest as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::json(path, e))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }
}

/// Render every subject's references to `dir/<subject>/<i>.png` (and `masks/<i>.png`, the
/// subject mask, out of the way of `vstar train --images`) at `size` px. Returns the image paths.
pub fn write_references(dir: &Path, size: u32) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for s in manifest().subjects {
        let sub = dir.join(&s.name);
        let masks = sub.join("masks");
        std::fs::create_dir_all(&masks).map_err(|e| Error::io(&masks, e))?;
        for (i, spec) in s.references.iter().enumerate() {
            let r = render(spec, size);
            let p = sub.join(format!("{i}.png"));
            r.image.save(&p).map_err(|e| Error::image(&p, e))?;
            let m = masks.join(format!("{i}.png"));
            r.mask.save(&m).map_err(|e| Error::image(&m, e))?;
            out.push(p);
        }
    }
    Ok(out)
}
