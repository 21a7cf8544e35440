//! The evaluation protocol's real-encoder metrics (METHODS.md section 5) for users who supply
//! weights: DINO and CLIP-I (subject fidelity: cosine similarity of generated and reference
//! image embeddings) and CLIP-T (text fidelity: cosine of an image and its prompt), from a
//! transformers folder - CLIPModel, CLIPVisionModel[WithProjection], ViTModel (DINO) or
//! Dinov2Model - with its preprocessor_config.json and, for CLIP-T, its tokenizer files.

use crate::image_processor::ImageProcessor;
use candle_core::{DType, Device, Error, Result, Tensor};
use image::RgbImage;
use std::path::Path;
use vstar_nn::models::vision::{unit_rows, ClipText, Family, VisionConfig, VisionModel};
use vstar_nn::tokenizer::ClipTokenizer;
use vstar_nn::weights::load_component;

/// An image encoder with its preprocessing: images in, unit-length embeddings out.
pub struct ImageEncoder {
    pub family: Family,
    pub processor: ImageProcessor,
    model: VisionModel,
    device: Device,
    /// Weight-file entries no layer read (a ViT pooler, DINOv2's mask token, a CLIPModel's text
    /// half when only its images are embedded): reported, not fatal.
    pub unused: Vec<String>,
}

/// The folder's image encoder and, when `with_text` and it has one, its CLIP text half.
fn open(dir: &Path, dev: &Device, with_text: bool) -> Result<(ImageEncoder, Option<ClipText>)> {
    if !dir.is_dir() {
        return Err(Error::Msg(format!(
            "{}: no such folder; pass a transformers CLIP, DINO (ViTModel) or DINOv2 model folder",
            dir.display()
        )));
    }
    let cfg = VisionConfig::from_file(&dir.join("config.json"))?;
    let (vb, src) = load_component(dir, DType::F32, dev)?;
    let model = VisionModel::new(&cfg, vb.clone())?;
    let text = cfg.text.as_ref().filter(|_| with_text).map(|t| ClipText::new(t, vb)).transpose()?;
    let encoder = ImageEncoder {
        family: cfg.family,
        processor: ImageProcessor::for_model(dir, cfg.family)?,
        model,
        device: dev.clone(),
        unused: src.unused(),
    };
    Ok((encoder, text))
}

impl ImageEncoder {
    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        Ok(open(dir, dev, false)?.0)
    }

    /// Unit embeddings (B, D) of preprocessed pixels (B, 3, H, W): CLIP's projected image
    /// embedding (its pooled token without a projection), DINO's / DINOv2's class token.
    pub fn embed_pixels(&self, pixels: &Tensor) -> Result<Tensor> {
        unit_rows(self.model.forward(&pixels.to_device(&self.device)?)?.features())
    }

    pub fn embed(&self, images: &[RgbImage]) -> Result<Tensor> {
        self.embed_pixels(&self.processor.batch(images, &self.device)?)
    }
}

/// A full CLIPModel: its image encoder, text tower and tokenizer, for CLIP-I and CLIP-T.
pub struct ClipScorer {
    pub image: ImageEncoder,
    text: ClipText,
    tokenizer: ClipTokenizer,
}

impl ClipScorer {
    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        let (image, text) = open(dir, dev, true)?;
        let Some(text) = text else {
            return Err(Error::Msg(format!(
                "{}: a {:?} image encoder without a text tower; CLIP-T needs a full CLIPModel folder \
                 (model_type \"clip\")",
                dir.join("config.json").display(),
                image.family
            )));
        };
        let tokenizer = ClipTokenizer::from_dir(dir)?;
        Ok(Self { image, text, tokenizer })
    }

    /// Token ids (B, context) the text tower reads, as the CLIP tokenizer pads them.
    pub fn token_ids(&self, prompts: &[&str]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(prompts.len() * self.tokenizer.max_length);
        for p in prompts {
            ids.extend(self.tokenizer.encode(p)?.ids);
        }
        Tensor::from_vec(ids, (prompts.len(), self.tokenizer.max_length), &self.image.device)
    }

    /// Unit text embeddings (B, P).
    pub fn embed_texts(&self, prompts: &[&str]) -> Result<Tensor> {
        self.text.embed(&self.token_ids(prompts)?)
    }

    /// CLIP-T of each image with its own prompt.
    pub fn clip_t(&self, images: &[RgbImage], prompts: &[&str]) -> Result<Vec<f64>> {
        if images.len() != prompts.len() {
            return Err(Error::Msg(format!("CLIP-T pairs images with prompts: {} vs {}", images.len(), prompts.len())));
        }
        row_cosines(&self.image.embed(images)?, &self.embed_texts(prompts)?)
    }
}

/// CLIP-I / DINO: the mean cosine over every (generated, reference) pair of unit embeddings.
pub fn mean_pairwise_cosine(generated: &Tensor, references: &Tensor) -> Result<f64> {
    Ok(generated.matmul(&references.t()?)?.mean_all()?.to_scalar::<f32>()? as f64)
}

/// The cosine of row i of `a` with row i of `b` (unit rows of equal count).
pub fn row_cosines(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    if a.dims() != b.dims() {
        return Err(Error::Msg(format!("embeddings {:?} and {:?} do not pair row by row", a.dims(), b.dims())));
    }
    Ok((a * b)?.sum(1)?.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
}
