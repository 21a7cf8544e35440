//! The caption grammar: what a render can be called, with wording variants.
//!
//! Unmentioned attributes are whatever the render happens to have: that is how
//! classifier-free guidance learns what a word adds.

use crate::context::{Accessory, ColorMod, Material, Scene, Style};
use crate::spec::SceneSpec;
use crate::superclass::Superclass;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which attributes a caption says, and an optional subject token ("V*", "sks") placed
/// before the class word.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentionSet {
    pub superclass: bool,
    pub scene: bool,
    pub color: bool,
    pub accessory: bool,
    pub material: bool,
    pub style: bool,
    pub token: Option<String>,
}

impl MentionSet {
    pub fn all() -> MentionSet {
        MentionSet {
            superclass: true,
            scene: true,
            color: true,
            accessory: true,
            material: true,
            style: true,
            token: None,
        }
    }

    /// Only the class word ("a dog").
    pub fn class_only() -> MentionSet {
        MentionSet { superclass: true, ..MentionSet::default() }
    }

    /// Each attribute mentioned with probability `p`; the class word with probability 0.95.
    pub fn random<R: Rng + ?Sized>(rng: &mut R, p: f64) -> MentionSet {
        MentionSet {
            superclass: rng.random_bool(0.95),
            scene: rng.random_bool(p),
            color: rng.random_bool(p),
            accessory: rng.random_bool(p),
            material: rng.random_bool(p),
            style: rng.random_bool(p),
            token: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> MentionSet {
        self.token = Some(token.to_string());
        self
    }
}

/// The attribute values a caption or prompt asks for (`None` = not asked). Values that
/// cannot be said (natural colour, plain material, no accessory) are always `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Elements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<Scene>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorMod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessory: Option<Accessory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<Material>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<Style>,
}

impl Elements {
    /// What `mention` says about `spec`.
    pub fn of(spec: &SceneSpec, mention: &MentionSet) -> Elements {
        let c = spec.context;
        Elements {
            scene: mention.scene.then_some(c.scene),
            color: (mention.color && c.color != ColorMod::Natural).then_some(c.color),
            accessory: (mention.accessory && c.accessory != Accessory::None).then_some(c.accessory),
            material: (mention.material && c.material != Material::Plain).then_some(c.material),
            style: mention.style.then_some(c.style),
        }
    }

    /// The elements a prompt in Toyland's wording asks for (any wording variant): what a
    /// user's own prompt is judged against. Phrases are matched first and cut out, so "red"
    /// in "wearing a red hat" is not also read as a colour.
    pub fn parse(prompt: &str) -> Elements {
        let mut text = format!(" {} ", prompt.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" "));
        let mut take = |phrases: &[&str]| -> bool {
            let hit = phrases.iter().find(|p| text.contains(&format!(" {p} ")));
            if let Some(p) = hit {
                text = text.replacen(&format!(" {p} "), " | ", 1);
            }
            hit.is_some()
        };
        let mut el = Elements::default();
        el.style = Style::ALL.iter().copied().find(|&s| take(style_phrases(s)));
        el.accessory = Accessory::ALL.iter().copied().find(|&a| take(accessory_phrases(a)));
        el.scene = Scene::ALL.iter().copied().find(|&s| take(scene_phrases(s)));
        el.color = ColorMod::ALL.iter().copied().find(|&c| color_word(c).is_some_and(|w| take(&[w])));
        el.material = Material::ALL.iter().copied().find(|&m| material_word(m).is_some_and(|w| take(&[w])));
        el
    }

    /// Number of context elements asked for (the superclass is not counted).
    pub fn count(&self) -> usize {
        [
            self.scene.is_some(),
            self.color.is_some(),
            self.accessory.is_some(),
            self.material.is_some(),
            self.style.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count()
    }
}

/// Wording variants; the first is the canonical one used for benchmark prompts.
pub fn scene_phrases(s: Scene) -> &'static [&'static str] {
    match s {
        Scene::Studio => &["in a studio", "on a plain background"],
        Scene::Snow => &["in the snow", "on the snow"],
        Scene::Beach => &["on the beach", "at the beach"],
        Scene::Jungle => &["in the jungle", "in a jungle"],
        Scene::City => &["with a city in the background", "in front of a city skyline"],
        Scene::PinkFabric => &["on top of pink fabric", "on pink fabric"],
        Scene::WoodenFloor => &["on top of a wooden floor", "on a wooden floor"],
        Scene::Mountains => &["with a mountain in the background", "in the mountains"],
        Scene::NightSky => &["under a night sky", "under the stars at night"],
        Scene::Desert => &["in the desert", "in a desert"],
    }
}

pub fn accessory_phrases(a: Accessory) -> &'static [&'static str] {
    match a {
        Accessory::None => &[],
        Accessory::RedHat => &["wearing a red hat", "with a red hat"],
        Accessory::SantaHat => &["wearing a santa hat", "with a santa hat"],
        Accessory::Sunglasses => &["wearing sunglasses", "with sunglasses"],
        Accessory::RainbowScarf => &["wearing a rainbow scarf", "with a rainbow scarf"],
    }
}

/// Style prefixes ("a photo of" + the noun phrase).
pub fn style_phrases(s: Style) -> &'static [&'static str] {
    match s {
        Style::Photo => &["a photo of", "a picture of"],
        Style::Sketch => &["a sketch of", "a pencil sketch of"],
        Style::Watercolor => &["a watercolor painting of", "a watercolor of"],
        Style::PixelArt => &["pixel art of", "a pixel art image of"],
        Style::OilPainting => &["an oil painting of", "an oil painting showing"],
    }
}

/// Adjectives before the noun.
pub fn color_word(c: ColorMod) -> Option<&'static str> {
    (c != ColorMod::Natural).then_some(c.name())
}

pub fn material_word(m: Material) -> Option<&'static str> {
    match m {
        Material::Plain => None,
        Material::Shiny => Some("shiny"),
        Material::Wet => Some("wet"),
    }
}

/// The noun used when the class is not said and there is no token.
pub const GENERIC_NOUN: &str = "thing";

/// Caption a render: say the attributes in `mention`, in a randomly chosen wording.
pub fn caption<R: Rng + ?Sized>(spec: &SceneSpec, mention: &MentionSet, rng: &mut R) -> String {
    let class = mention.superclass.then(|| spec.instance.superclass.word());
    let el = Elements::of(spec, mention);
    compose(&el, class, mention.token.as_deref(), &mut |n| rng.random_range(0..n))
}

/// The canonical wording (first variant everywhere) of `el` for `class` with an optional
/// token: the form benchmark prompts use. With `token = None` it is the "clean" superclass
/// prompt ("a dog in the snow").
pub fn canonical(el: &Elements, class: Option<&str>, token: Option<&str>) -> String {
    compose(el, class, token, &mut |_| 0)
}

/// `class` None and `token` Some gives the bare token ("a photo of sks").
pub(crate) fn compose(
    el: &Elements,
    class: Option<&str>,
    token: Option<&str>,
    choose: &mut dyn FnMut(usize) -> usize,
) -> String {
    let mut words: Vec<&str> = Vec::new();
    if let Some(s) = el.style {
        let v = style_phrases(s);
        words.push(v[choose(v.len())]);
    }
    // The noun phrase: [article] [material] [colour] [token] [class].
    let mut np: Vec<&str> = Vec::new();
    np.extend(el.material.and_then(material_word));
    np.extend(el.color.and_then(color_word));
    np.extend(token);
    match (class, token) {
        (Some(c), _) => np.push(c),
        (None, None) => np.push(GENERIC_NOUN),
        (None, Some(_)) => {}
    }
    // DreamBooth style "a photo of sks dog" drops the article before a bare token half the
    // time; canonical prompts keep it ("a sks dog").
    let drop_article = np.first().copied() == token && token.is_some() && choose(2) == 1;
    let article = if drop_article {
        None
    } else if np.first().is_some_and(|w| Some(*w) != token && starts_with_vowel(w)) {
        Some("an")
    } else {
        Some("a")
    };
    words.extend(article);
    words.extend(np);
    let acc = el.accessory.map(|a| {
        let v = accessory_phrases(a);
        v[choose(v.len())]
    });
    let scene = el.scene.map(|s| {
        let v = scene_phrases(s);
        v[choose(v.len())]
    });
    // Usually accessory then scene; sometimes the other way round.
    if acc.is_some() && scene.is_some() && choose(3) == 2 {
        words.extend(scene);
        words.extend(acc);
    } else {
        words.extend(acc);
        words.extend(scene);
    }
    words.join(" ")
}

fn starts_with_vowel(w: &str) -> bool {
    w.starts_with(['a', 'e', 'i', 'o', 'u'])
}

/// Every word the grammar can produce (without tokens), sorted and deduplicated.
pub fn grammar_words() -> Vec<String> {
    let mut phrases: Vec<&str> = vec!["a", "an", GENERIC_NOUN];
    for &s in Scene::ALL {
        phrases.extend(scene_phrases(s));
    }
    for &a in Accessory::ALL {
        phrases.extend(accessory_phrases(a));
    }
    for &s in Style::ALL {
        phrases.extend(style_phrases(s));
    }
    phrases.extend(ColorMod::ALL.iter().filter_map(|&c| color_word(c)));
    phrases.extend(Material::ALL.iter().filter_map(|&m| material_word(m)));
    phrases.extend(Superclass::ALL.iter().map(|s| s.word()));
    let mut words: Vec<String> = phrases.iter().flat_map(|p| p.split_whitespace()).map(str::to_string).collect();
    words.sort();
    words.dedup();
    words
}
