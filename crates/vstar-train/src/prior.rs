//! Prior preservation's class images: generated once by the base model with "a photo of a
//! <class>" and cached as PNGs (a rerun, or `--resume`, reuses them).

use candle_core::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vstar_diffusion::guidance::{Cfg, PromptKind};
use vstar_diffusion::{images, pipeline};
use vstar_nn::model::Model;

pub const STEPS: usize = 30;
pub const GUIDANCE: f64 = 5.0;

pub fn class_prompt(class: &str) -> String {
    format!("a photo of a {class}")
}

/// Makes sure `dir` holds `n` class images (`0000.png` ..), generating the missing ones with
/// the model as it is (call before any adapter is attached). Returns `dir`.
pub fn ensure_class_images(
    model: &Model,
    class: &str,
    n: usize,
    dir: &Path,
    seed: u64,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| candle_core::Error::Msg(format!("{}: {e}", dir.display())))?;
    let missing: Vec<usize> = (0..n).filter(|i| !dir.join(format!("{i:04}.png")).exists()).collect();
    if missing.is_empty() {
        return Ok(dir.to_path_buf());
    }
    log(&format!("prior preservation: generating {} class images of {:?}", missing.len(), class_prompt(class)));
    let mut by_kind = BTreeMap::new();
    by_kind.insert(PromptKind::Concept, pipeline::encode_prompt(model, &class_prompt(class))?);
    for &i in &missing {
        // One image per seed, so image i is the same whichever others were cached.
        let (img, _) = pipeline::txt2img(model, &Cfg { scale: GUIDANCE }, by_kind.clone(), 1, seed + i as u64, STEPS)?;
        images::save_png(&dir.join(format!("{i:04}.png")), &images::to_rgb(&img.get(0)?)?)?;
    }
    Ok(dir.to_path_buf())
}
