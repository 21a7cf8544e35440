//! Contact sheets: many renders on one image, for looking at the world.

use crate::context::{Accessory, ColorMod, Context, Material, Scene, Style};
use crate::instance::Instance;
use crate::render::render;
use crate::spec::SceneSpec;
use crate::superclass::Superclass;
use crate::Error;
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Tile equally sized images in rows of `cols`, with a 2 px gray gutter.
///
/// # Panics
/// If `renders` is empty, `cols` is 0 or the images differ in size.
pub fn contact_sheet(renders: &[RgbImage], cols: usize) -> RgbImage {
    assert!(!renders.is_empty() && cols > 0, "need images and columns");
    let (w, h) = renders[0].dimensions();
    let rows = renders.len().div_ceil(cols);
    let g = 2;
    let mut out = RgbImage::from_pixel(cols as u32 * (w + g) + g, rows as u32 * (h + g) + g, Rgb([90, 90, 90]));
    for (i, img) in renders.iter().enumerate() {
        assert_eq!(img.dimensions(), (w, h), "contact sheet images differ in size");
        let (c, r) = ((i % cols) as u32, (i / cols) as u32);
        image::imageops::replace(&mut out, img, (g + c * (w + g)) as i64, (g + r * (h + g)) as i64);
    }
    out
}

/// The sheets `render_world_sheet` writes: name and the specs, in rows of `cols`.
pub fn world_sheets() -> Vec<(&'static str, Vec<SceneSpec>, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let insts: Vec<Vec<Instance>> =
        Superclass::ALL.iter().map(|&sc| (0..3).map(|_| Instance::sample(sc, &mut rng)).collect()).collect();
    let spec = |i: &Instance, c: Context, seed: u64| SceneSpec::new(i.clone(), c, seed);
    let base = Context::default();
    let mut sheets = Vec::new();

    // Superclass x scene (one instance each).
    let mut v = Vec::new();
    for (k, sc) in insts.iter().enumerate() {
        for (j, &scene) in Scene::ALL.iter().enumerate() {
            v.push(spec(&sc[0], Context { scene, ..base }, (k * 100 + j) as u64));
        }
    }
    sheets.push(("scenes", v, Scene::ALL.len()));

    // Superclass x style.
    let mut v = Vec::new();
    for (k, sc) in insts.iter().enumerate() {
        for (j, &style) in Style::ALL.iter().enumerate() {
            let scene = Scene::ALL[(k + j) % Scene::ALL.len()];
            v.push(spec(&sc[1], Context { scene, style, ..base }, (k * 10 + j) as u64));
        }
    }
    sheets.push(("styles", v, Style::ALL.len()));

    // Superclass x (colour, accessory, material).
    let mut v = Vec::new();
    for (k, sc) in insts.iter().enumerate() {
        for &color in ColorMod::ALL {
            v.push(spec(&sc[2], Context { color, ..base }, k as u64));
        }
        for &accessory in &Accessory::ALL[1..] {
            v.push(spec(&sc[2], Context { accessory, ..base }, k as u64));
        }
        for &material in &Material::ALL[1..] {
            v.push(spec(&sc[2], Context { material, ..base }, k as u64));
        }
    }
    sheets.push(("attributes", v, ColorMod::ALL.len() + Accessory::ALL.len() + 1));

    // Random contexts (the training distribution's variety).
    let mut v = Vec::new();
    for k in 0..48u64 {
        let sc = Superclass::ALL[k as usize % 8];
        let i = Instance::sample(sc, &mut rng);
        v.push(spec(&i, Context::sample_uniform(&mut rng), k));
    }
    sheets.push(("random", v, 8));
    sheets
}

/// Render every world sheet at `size` px per tile into `out_dir/toyland_<name>_<size>.png`.
pub fn render_world_sheet(out_dir: &Path, size: u32) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut written = Vec::new();
    for (name, specs, cols) in world_sheets() {
        let imgs: Vec<RgbImage> = specs.iter().map(|s| render(s, size).image).collect();
        let path = out_dir.join(format!("toyland_{name}_{size}.png"));
        contact_sheet(&imgs, cols).save(&path).map_err(|e| Error::image(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
