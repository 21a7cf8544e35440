//! Segment Anything (SAM) inference from a transformers `SamModel.save_pretrained` folder
//! (config.json + model.safetensors, f32 / f16 / bf16, e.g. facebook/sam-vit-base), with the
//! image processor's preprocessor_config.json if present: `Sam::segment` turns an image and a
//! box or point prompt (image pixels) into a binary mask at the image's size, as transformers'
//! SamProcessor + SamModel + `post_process_masks` do. Inference only, one image and one prompt
//! at a time; mask prompts are not implemented (`prompt_encoder.mask_embed.*` stays unread).

pub mod config;
mod image_encoder;
mod mask_decoder;
pub mod processor;
mod prompt_encoder;

pub use config::{SamConfig, SamProcessorConfig};
pub use processor::{Preprocessed, SamProcessor};
pub use prompt_encoder::PointLabel;

use crate::weights::load_component;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use image::{GrayImage, RgbImage};
use image_encoder::ImageEncoder;
use mask_decoder::MaskDecoder;
use prompt_encoder::{PositionalEmbedding, PromptEncoder};
use std::path::Path;

/// A linear layer applied over the last dimension of any-rank input as one 2-D GEMM.
#[derive(Debug, Clone)]
pub(crate) struct Lin(candle_nn::Linear);

impl Lin {
    pub(crate) fn new(i: usize, o: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self(if bias { candle_nn::linear(i, o, vb)? } else { candle_nn::linear_no_bias(i, o, vb)? }))
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let i = *dims.last().unwrap_or(&0);
        let y = self.0.forward(&x.contiguous()?.reshape(((), i))?)?;
        let mut out = dims;
        *out.last_mut().unwrap() = y.dim(1)?;
        y.reshape(out)
    }
}

/// A prompt in image pixels (x right, y down), as SamProcessor takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamPrompt {
    /// Top-left and bottom-right corners.
    Box { x0: f32, y0: f32, x1: f32, y1: f32 },
    /// One positive point (on the subject).
    Point { x: f32, y: f32 },
}

/// What the model predicts for one image and prompt.
#[derive(Debug, Clone)]
pub struct SamPrediction {
    /// (1, K, 4g, 4g) low-res mask logits (transformers' `pred_masks` without the point-batch axis).
    pub low_res_masks: Tensor,
    /// (1, K) predicted IoU per mask.
    pub iou_scores: Tensor,
    /// (K, H, W) mask logits at the image's size (`post_process_masks(binarize=False)`).
    pub masks: Tensor,
}

pub struct Sam {
    pub config: SamConfig,
    pub processor: SamProcessor,
    encoder: ImageEncoder,
    pe: PositionalEmbedding,
    prompt: PromptEncoder,
    decoder: MaskDecoder,
    image_pe: Tensor,
    unused: Vec<String>,
    device: Device,
}

impl Sam {
    /// Loads `dir`: config.json, the safetensors weights (computed in f32 whatever they are
    /// stored as) and preprocessor_config.json / processor_config.json if there.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = SamConfig::from_file(&dir.join("config.json"))?;
        let processor = SamProcessor::new(SamProcessorConfig::from_dir(dir, &config.vision)?);
        let (vb, source) = load_component(dir, DType::F32, device)?;
        let mut sam = Self::new(config, processor, vb)?;
        sam.unused = source.unused();
        Ok(sam)
    }

    /// `vb` at the checkpoint's root.
    pub fn new(config: SamConfig, processor: SamProcessor, vb: VarBuilder) -> Result<Self> {
        let pe = PositionalEmbedding::new(config.vision.num_pos_feats, &vb)?;
        let image_pe = pe.image_wide(config.vision.grid())?;
        Ok(Self {
            encoder: ImageEncoder::new(&config.vision, vb.pp("vision_encoder"))?,
            prompt: PromptEncoder::new(&config, vb.pp("prompt_encoder"))?,
            decoder: MaskDecoder::new(&config.decoder, vb.pp("mask_decoder"))?,
            pe,
            image_pe,
            unused: Vec::new(),
            device: vb.device().clone(),
            config,
            processor,
        })
    }

    /// Tensors of the weight file the model never read (the mask-prompt encoder's, for one).
    pub fn unused_tensors(&self) -> &[String] {
        &self.unused
    }

    pub fn preprocess(&self, image: &RgbImage) -> Result<Preprocessed> {
        self.processor.preprocess(image, &self.device)
    }

    /// Pixels (1, 3, S, S) -> image embeddings (1, D, g, g).
    pub fn image_embeddings(&self, pixels: &Tensor) -> Result<Tensor> {
        self.encoder.forward(pixels)
    }

    /// The image-wide positional embedding (1, D, g, g).
    pub fn image_positional_embeddings(&self) -> &Tensor {
        &self.image_pe
    }

    /// The sparse prompt embedding (N, D) of `prompt` on an image of (height, width) `original`.
    pub fn prompt_embeddings(&self, prompt: SamPrompt, original: (usize, usize)) -> Result<Tensor> {
        let scale = |x: f32, y: f32| self.processor.scale_point(original, (x as f64, y as f64));
        match prompt {
            SamPrompt::Box { x0, y0, x1, y1 } => {
                let ((a, b), (c, d)) = (scale(x0, y0), scale(x1, y1));
                self.prompt.embed_box(&self.pe, [a, b, c, d])
            }
            SamPrompt::Point { x, y } => {
                self.prompt.embed_points(&self.pe, &[(scale(x, y), PointLabel::Positive)], true)
            }
        }
    }

    /// Masks from precomputed image embeddings: (low-res logits (1, K, 4g, 4g), IoU (1, K)).
    pub fn decode(&self, embeddings: &Tensor, sparse: &Tensor, multimask: bool) -> Result<(Tensor, Tensor)> {
        self.decoder.forward(embeddings, &self.image_pe, sparse, &self.prompt.dense()?, multimask)
    }

    /// The whole pipeline for one image and prompt.
    pub fn predict(&self, image: &RgbImage, prompt: SamPrompt, multimask: bool) -> Result<SamPrediction> {
        let p = self.preprocess(image)?;
        let embeddings = self.image_embeddings(&p.pixels)?;
        let sparse = self.prompt_embeddings(prompt, p.original)?;
        let (low_res_masks, iou_scores) = self.decode(&embeddings, &sparse, multimask)?;
        let masks = self.processor.post_process(&low_res_masks, &p)?;
        Ok(SamPrediction { low_res_masks, iou_scores, masks })
    }

    /// The best of the multimask outputs (highest predicted IoU) at the image's size,
    /// binarised like transformers' post-processing (logit > 0 -> 255, else 0).
    pub fn segment(&self, image: &RgbImage, prompt: SamPrompt) -> Result<GrayImage> {
        let pred = self.predict(image, prompt, true)?;
        let iou = pred.iou_scores.flatten_all()?.to_vec1::<f32>()?;
        let best = iou.iter().enumerate().fold(0, |b, (i, &v)| if v > iou[b] { i } else { b });
        binarise(&pred.masks.get(best)?)
    }
}

/// (H, W) logits -> a mask image, 255 where the logit is above 0.
pub fn binarise(logits: &Tensor) -> Result<GrayImage> {
    let (h, w) = logits.dims2()?;
    let v = logits.flatten_all()?.to_vec1::<f32>()?;
    let px = v.iter().map(|&l| if l > 0.0 { 255 } else { 0 }).collect();
    Ok(GrayImage::from_raw(w as u32, h as u32, px).expect("mask size"))
}

/// The bounding box of a mask's pixels at or above 128 (inclusive pixel edges: the box of a
/// single pixel (x, y) is (x, y, x, y)), or None for an empty mask.
pub fn mask_box(mask: &GrayImage) -> Option<SamPrompt> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] >= 128 {
            b = Some(match b {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    b.map(|(x0, y0, x1, y1)| SamPrompt::Box { x0: x0 as f32, y0: y0 as f32, x1: x1 as f32, y1: y1 as f32 })
}
