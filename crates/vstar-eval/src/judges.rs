//! The Toyland judges as metrics: the attribute oracle (which prompt elements an image
//! shows), the identity oracle (how much an image looks like a subject) and the evaluation
//! CLIP. All trained on renders only (`vstar toyland pretrain`), never on generated images.

use candle_core::{Device, Result, Tensor};
use std::path::Path;
use vstar_toyland::caption::Elements;
use vstar_toyland::pretrain::{AttributeOracle, IdentityOracle};
use vstar_toyland::superclass::Superclass;

pub struct Judges {
    pub attribute: AttributeOracle,
    pub identity: IdentityOracle,
}

/// The oracles' input side in pixels.
pub const SIDE: usize = 32;

fn to_oracle_input(images: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = images.dims4()?;
    if (h, w) != (SIDE, SIDE) {
        candle_core::bail!("the Toyland oracles judge {SIDE}x{SIDE} images, got {h}x{w}");
    }
    (images * 2.0)? - 1.0
}

impl Judges {
    /// From a pretrained Toyland folder (`<model>/oracles/...`).
    pub fn load(model_dir: &Path, dev: &Device) -> Result<Self> {
        let o = model_dir.join("oracles");
        Ok(Self {
            attribute: AttributeOracle::load(&o.join("attribute"), dev)?,
            identity: IdentityOracle::load(&o.join("identity"), dev)?,
        })
    }

    /// Predicted class per head (order of `vstar_toyland::pretrain::HEADS`) for images
    /// (B, 3, 32, 32) in [0, 1].
    pub fn attributes(&self, images: &Tensor) -> Result<Vec<Vec<usize>>> {
        self.attribute.predict(&to_oracle_input(images)?)
    }

    /// Unit identity embeddings (B, D) for images in [0, 1].
    pub fn identity(&self, images: &Tensor) -> Result<Tensor> {
        self.identity.embed(&to_oracle_input(images)?)
    }
}

/// One asked element of one image: which oracle head judged it (order of
/// `vstar_toyland::pretrain::HEADS`), the value the prompt asked for and the value the oracle
/// read (class indices of that head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub head: usize,
    pub asked: usize,
    pub read: usize,
}

impl Hit {
    pub fn ok(&self) -> bool {
        self.asked == self.read
    }
}

/// For one image's predictions: the superclass check and each asked element, found or not.
/// Colour is not judged in a sketch (grayscale), as the oracle cannot see it.
pub fn element_hits(pred: &[usize], class: Superclass, el: &Elements) -> Vec<Hit> {
    let hit = |head: usize, asked: usize| Hit { head, asked, read: pred[head] };
    let mut v = vec![hit(0, class.index())];
    if let Some(s) = el.scene {
        v.push(hit(1, s.index()));
    }
    if let Some(c) = el.color {
        if el.style != Some(vstar_toyland::context::Style::Sketch) {
            v.push(hit(2, c.index()));
        }
    }
    if let Some(a) = el.accessory {
        v.push(hit(3, a.index()));
    }
    if let Some(m) = el.material {
        v.push(hit(4, m.index()));
    }
    if let Some(s) = el.style {
        v.push(hit(5, s.index()));
    }
    v
}

/// Fraction of the asked context elements found (the superclass excluded); 1 when none asked.
pub fn element_recall(hits: &[Hit]) -> f64 {
    let ctx: Vec<bool> = hits.iter().filter(|h| h.head != 0).map(Hit::ok).collect();
    if ctx.is_empty() {
        return 1.0;
    }
    ctx.iter().filter(|h| **h).count() as f64 / ctx.len() as f64
}

/// The unit mean identity embedding of a subject's images (B, 3, 32, 32) in [0, 1].
pub fn centroid(judges: &Judges, images: &Tensor) -> Result<Tensor> {
    vstar_toyland::pretrain::contrastive::normalize(&judges.identity(images)?.mean_keepdim(0)?)?.squeeze(0)
}

/// Cosine similarity of each image's (B, 3, 32, 32) identity embedding to a unit centroid.
pub fn similarity(judges: &Judges, images: &Tensor, centroid: &Tensor) -> Result<Vec<f64>> {
    let sims = judges.identity(images)?.matmul(&centroid.unsqueeze(1)?)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(sims.into_iter().map(|v| v as f64).collect())
}

/// Running scores of generated images against a subject and their prompts' elements.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Cosine similarity of each image's identity embedding to the subject centroid.
    pub identity: Vec<f64>,
    /// Fraction of each image's asked context elements found.
    pub recall: Vec<f64>,
    pub superclass_hits: usize,
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

impl Tally {
    /// Judges images (B, 3, 32, 32) in [0, 1] made for a prompt with `elements`; returns the
    /// attribute predictions.
    pub fn add(
        &mut self,
        judges: &Judges,
        images: &Tensor,
        class: Superclass,
        elements: &Elements,
        centroid: &Tensor,
    ) -> Result<Vec<Vec<usize>>> {
        self.identity.extend(similarity(judges, images, centroid)?);
        let preds = judges.attributes(images)?;
        for p in &preds {
            let hits = element_hits(p, class, elements);
            self.recall.push(element_recall(&hits));
            self.superclass_hits += hits[0].ok() as usize;
        }
        Ok(preds)
    }

    pub fn identity_mean(&self) -> f64 {
        mean(&self.identity)
    }
    pub fn recall_mean(&self) -> f64 {
        mean(&self.recall)
    }
    pub fn superclass_rate(&self) -> f64 {
        self.superclass_hits as f64 / self.recall.len().max(1) as f64
    }
}
