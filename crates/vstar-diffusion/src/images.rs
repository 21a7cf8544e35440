//! Tensors <-> pictures: PNG/JPEG reading with resize + centre crop, atomic PNG writing.

use candle_core::{Device, Error, Result, Tensor};
use image::{imageops::FilterType, RgbImage};
use std::path::Path;

/// (3, H, W) in [0, 1] -> an 8-bit RGB image (rounded as diffusers' numpy_to_pil does).
pub fn to_rgb(t: &Tensor) -> Result<RgbImage> {
    let (c, h, w) = t.dims3()?;
    if c != 3 {
        candle_core::bail!("expected a (3, H, W) image tensor, got {:?}", t.dims());
    }
    let data = t.permute((1, 2, 0))?.flatten_all()?.to_vec1::<f32>()?;
    let bytes: Vec<u8> = data.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    RgbImage::from_raw(w as u32, h as u32, bytes).ok_or_else(|| Error::Msg("image buffer size mismatch".into()))
}

/// An RGB image -> (3, H, W) in [0, 1].
pub fn from_rgb(img: &RgbImage, dev: &Device) -> Result<Tensor> {
    let (w, h) = img.dimensions();
    let data: Vec<f32> = img.as_raw().iter().map(|&b| b as f32 / 255.0).collect();
    Tensor::from_vec(data, (h as usize, w as usize, 3), dev)?.permute((2, 0, 1))?.contiguous()
}

/// Reads an image file, resizes its short side to fit and centre-crops to (height, width).
pub fn load(path: &Path, height: u32, width: u32) -> Result<RgbImage> {
    let img = image::open(path)
        .map_err(|e| Error::Msg(format!("{}: cannot read the image ({e})", path.display())))?
        .to_rgb8();
    Ok(resize_crop(&img, height, width))
}

pub fn resize_crop(img: &RgbImage, height: u32, width: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (width, height) {
        return img.clone();
    }
    let s = (width as f64 / w as f64).max(height as f64 / h as f64);
    let (nw, nh) = (((w as f64 * s).round() as u32).max(width), ((h as f64 * s).round() as u32).max(height));
    let resized = image::imageops::resize(img, nw, nh, FilterType::Lanczos3);
    image::imageops::crop_imm(&resized, (nw - width) / 2, (nh - height) / 2, width, height).to_image()
}

/// Writes bytes to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| Error::Msg(format!("{}: cannot write ({e})", tmp.display())))
    })
}

/// `write_atomic` for writers that take a path (safetensors): `write` fills a temporary file
/// beside `path`, which then replaces `path`.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::Msg(format!("{}: cannot create folder ({e})", dir.display())))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Msg(format!("{}: cannot write ({e})", path.display())))
}

pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::Msg(format!("{}: PNG encoding failed ({e})", path.display())))?;
    write_atomic(path, buf.get_ref())
}
