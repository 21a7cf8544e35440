//! Image preprocessing as transformers' image processors do it - CLIPImageProcessor,
//! BitImageProcessor (DINOv2) and ViTImageProcessor (DINO) - configured by a model folder's
//! `preprocessor_config.json`: resize (shortest edge, or a fixed size), centre crop, rescale,
//! normalise. Resampling is the `image` crate's filter of the same name, not PIL's fixed-point
//! one, so pixels may differ from transformers' by about one 8-bit level.

use candle_core::{Device, Error, Result, Tensor};
use image::imageops::FilterType;
use image::RgbImage;
use serde_json::Value;
use std::path::Path;
use vstar_nn::models::vision::keys::{read_object, Keys};
use vstar_nn::models::vision::Family;

/// CLIPImageProcessor's class defaults; BitImageProcessor's are the same.
const CLIP_DEFAULTS: &str = r#"{"do_resize": true, "size": {"shortest_edge": 224}, "resample": 3,
    "do_center_crop": true, "crop_size": {"height": 224, "width": 224}, "do_rescale": true,
    "rescale_factor": 0.00392156862745098, "do_normalize": true,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}"#;
const VIT_DEFAULTS: &str = r#"{"do_resize": true, "size": {"height": 224, "width": 224}, "resample": 2,
    "do_center_crop": false, "do_rescale": true, "rescale_factor": 0.00392156862745098, "do_normalize": true,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#;
/// A DINO folder without a processor file: DINO's evaluation transform (resize 256, crop 224,
/// ImageNet statistics), as the DreamBooth DINO metric uses it.
const DINO_DEFAULTS: &str = r#"{"do_resize": true, "size": {"shortest_edge": 256}, "resample": 3,
    "do_center_crop": true, "crop_size": {"height": 224, "width": 224}, "do_rescale": true,
    "rescale_factor": 0.00392156862745098, "do_normalize": true,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Resize {
    Keep,
    ShortestEdge(u32),
    Exact { height: u32, width: u32 },
}

#[derive(Debug, Clone)]
pub struct ImageProcessor {
    resize: Resize,
    filter: FilterType,
    crop: Option<(u32, u32)>,
    rescale: Option<f32>,
    normalize: Option<([f32; 3], [f32; 3])>,
    /// Where the settings came from, for error messages.
    source: String,
}

fn dim(k: &Keys, key: &str, v: &Value) -> Result<u32> {
    v.as_u64()
        .filter(|&n| n > 0 && n <= u32::MAX as u64)
        .map(|n| n as u32)
        .ok_or_else(|| k.refuse(key, "expected sizes >= 1"))
}

/// `size` / `crop_size`: an int (square, or the shortest edge when `int_is_edge`), `{"shortest_edge"}`
/// or `{"height", "width"}`.
fn size(k: &Keys, key: &str, int_is_edge: bool) -> Result<Resize> {
    let v = k.get(key).ok_or_else(|| k.refuse(key, "a size is needed"))?;
    if v.is_number() {
        let n = dim(k, key, v)?;
        return Ok(if int_is_edge { Resize::ShortestEdge(n) } else { Resize::Exact { height: n, width: n } });
    }
    let o = v.as_object().ok_or_else(|| k.refuse(key, "expected an integer or an object"))?;
    let field = |name| o.get(name).filter(|v: &&Value| !v.is_null());
    match (field("shortest_edge"), field("longest_edge"), field("height"), field("width")) {
        (Some(s), None, None, None) => Ok(Resize::ShortestEdge(dim(k, key, s)?)),
        (None, None, Some(h), Some(w)) => Ok(Resize::Exact { height: dim(k, key, h)?, width: dim(k, key, w)? }),
        _ => Err(k.refuse(key, "vstar reads {\"shortest_edge\"} or {\"height\", \"width\"}")),
    }
}

fn per_channel(k: &Keys, key: &str) -> Result<[f32; 3]> {
    let bad = || k.refuse(key, "expected a number or 3 numbers");
    match k.get(key) {
        Some(Value::Number(n)) => Ok([n.as_f64().ok_or_else(bad)? as f32; 3]),
        Some(Value::Array(a)) if a.len() == 3 => {
            let v: Vec<f32> = a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect::<Option<_>>().ok_or_else(bad)?;
            Ok([v[0], v[1], v[2]])
        }
        _ => Err(bad()),
    }
}

impl ImageProcessor {
    /// From `<dir>/preprocessor_config.json`, or the family's defaults when the folder has none.
    pub fn for_model(dir: &Path, family: Family) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            let defaults = if family == Family::Clip { CLIP_DEFAULTS } else { DINO_DEFAULTS };
            let k = Keys::new(defaults, &Value::Null, &path, "")?;
            return Self::from_keys(&k, true, format!("{family:?} defaults ({} is absent)", path.display()));
        }
        let v = read_object(&path, "expected a transformers image processor config")?;
        let kind = ["image_processor_type", "feature_extractor_type"]
            .iter()
            .find_map(|key| v.get(*key).and_then(Value::as_str))
            .unwrap_or_default();
        // Fast (torchvision) and Pil variants share the class defaults; a bare int size means
        // the shortest edge for CLIP / BiT and a square for ViT (transformers' default_to_square).
        let (defaults, int_is_edge) = match kind.trim_end_matches("Fast").trim_end_matches("Pil") {
            "CLIPImageProcessor" | "CLIPFeatureExtractor" | "BitImageProcessor" => (CLIP_DEFAULTS, true),
            "ViTImageProcessor" | "ViTFeatureExtractor" => (VIT_DEFAULTS, false),
            _ => {
                return Err(Keys::new("{}", &v, &path, "")?.refuse(
                    "image_processor_type",
                    "vstar reads CLIPImageProcessor, BitImageProcessor and ViTImageProcessor",
                ))
            }
        };
        Self::from_keys(&Keys::new(defaults, &v, &path, "")?, int_is_edge, path.display().to_string())
    }

    fn from_keys(k: &Keys, int_is_edge: bool, source: String) -> Result<Self> {
        let resize = if k.bool("do_resize")? { size(k, "size", int_is_edge)? } else { Resize::Keep };
        let filter = match k.usize("resample")? {
            0 => FilterType::Nearest,
            1 => FilterType::Lanczos3,
            2 => FilterType::Triangle,
            3 => FilterType::CatmullRom,
            _ => return Err(k.refuse("resample", "vstar implements PIL's nearest, lanczos, bilinear and bicubic")),
        };
        let crop = match k.bool("do_center_crop")? {
            true => match size(k, "crop_size", false)? {
                Resize::Exact { height, width } => Some((height, width)),
                _ => return Err(k.refuse("crop_size", "expected an integer or {\"height\", \"width\"}")),
            },
            false => None,
        };
        let rescale = if k.bool("do_rescale")? { Some(k.f64("rescale_factor")? as f32) } else { None };
        let normalize = if k.bool("do_normalize")? {
            Some((per_channel(k, "image_mean")?, per_channel(k, "image_std")?))
        } else {
            None
        };
        Ok(Self { resize, filter, crop, rescale, normalize, source })
    }

    fn resized(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let (nw, nh) = match self.resize {
            Resize::Keep => return img.clone(),
            Resize::Exact { height, width } => (width, height),
            // transformers: the long side is int(size * long / short), truncated.
            Resize::ShortestEdge(s) if w <= h => (s, (s as f64 * h as f64 / w as f64) as u32),
            Resize::ShortestEdge(s) => ((s as f64 * w as f64 / h as f64) as u32, s),
        };
        image::imageops::resize(img, nw, nh, self.filter)
    }

    /// One image -> (3, H, W) pixel values, as the processor's `pixel_values`.
    pub fn preprocess(&self, img: &RgbImage) -> Result<Tensor> {
        if img.width() == 0 || img.height() == 0 {
            return Err(Error::Msg("cannot preprocess an empty image".into()));
        }
        let mut img = self.resized(img);
        if let Some((ch, cw)) = self.crop {
            let (w, h) = img.dimensions();
            if cw > w || ch > h {
                return Err(Error::Msg(format!(
                    "{}: the {cw}x{ch} centre crop is larger than the {w}x{h} resized image",
                    self.source
                )));
            }
            img = image::imageops::crop_imm(&img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (mean, std) = self.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
        let scale = self.rescale.unwrap_or(1.0);
        let mut data = vec![0f32; 3 * h * w];
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                data[c * h * w + i] = (px[c] as f32 * scale - mean[c]) / std[c];
            }
        }
        Tensor::from_vec(data, (3, h, w), &Device::Cpu)
    }

    /// A batch (B, 3, H, W) on `dev`; every image must come out the same size (a crop ensures it).
    pub fn batch(&self, images: &[RgbImage], dev: &Device) -> Result<Tensor> {
        let rows = images.iter().map(|i| self.preprocess(i)).collect::<Result<Vec<_>>>()?;
        let Some(first) = rows.first() else {
            return Err(Error::Msg("no images to preprocess".into()));
        };
        if let Some(other) = rows.iter().find(|r| r.dims() != first.dims()) {
            return Err(Error::Msg(format!(
                "{}: images come out as {:?} and {:?}; without a centre crop they need the same aspect ratio",
                self.source,
                first.dims(),
                other.dims()
            )));
        }
        Tensor::stack(&rows, 0)?.to_device(dev)
    }
}
