//! The renderer: scene, subject (pattern, mark, material), accessory, then style.

use crate::accessory;
use crate::backdrop::{self, Painter, GROUND_Y};
use crate::color::{mix, scale, skia, skia_a, Rgb, INK, WHITE};
use crate::context::Material;
use crate::figure::{figure, Detail, Figure};
use crate::geom::{circle, ellipse, line, poly, rect, union};
use crate::instance::{Instance, MarkKind, Pattern};
use crate::labels::Labels;
use crate::spec::SceneSpec;
use crate::style;
use image::{GrayImage, RgbImage};
use rand::Rng;
use tiny_skia::{
    FillRule, GradientStop, LinearGradient, Mask, Paint, Path, PathBuilder, Pixmap, Point, RadialGradient, SpreadMode,
    Stroke, Transform,
};

/// A rendered image with its subject mask and labels.
#[derive(Clone, Debug)]
pub struct Render {
    pub image: RgbImage,
    /// Anti-aliased coverage (0..255) of the subject's pixels: body, details and the
    /// accessory; not the shadow, puddle or style effects.
    pub mask: GrayImage,
    pub labels: Labels,
}

/// Render `spec` at `size` x `size` pixels. Deterministic: same spec, same pixels.
///
/// # Panics
/// If `size` is 0.
pub fn render(spec: &SceneSpec, size: u32) -> Render {
    assert!(size > 0, "render size must be positive");
    let mut pm = Pixmap::new(size, size).expect("non-zero pixmap");
    let s = size as f32 / 100.0;
    let world = Transform::from_scale(s, s);
    let mut rng = spec.rng(2);
    backdrop::draw(&mut Painter { pm: &mut pm, t: world }, spec.context.scene, &mut rng);

    let inst = &spec.instance;
    let fig = figure(inst.superclass, &inst.shape);
    let bounds = body_bounds(&fig);
    // Fit the subject: as big as the frame allows (room above for a hat), centred.
    let fit = (78.0 / (bounds.2 - bounds.0)).min(62.0 / -bounds.1).min(1.3);
    let lay = spec.layout();
    let k = s * lay.scale * fit;
    let cx0 = (bounds.0 + bounds.2) / 2.0;
    let t = Transform::from_row(k, 0.0, 0.0, k, s * (50.0 + lay.dx) - k * cx0, s * (GROUND_Y + lay.dy));
    let main = spec.context.color.rgb().unwrap_or(inst.palette.main);

    let body_path = union(fig.body.iter().cloned()).expect("figure has a body");
    let mut body_mask = Mask::new(size, size).expect("non-zero mask");
    body_mask.fill_path(&body_path, FillRule::Winding, true, t);

    let mut d = Draw { pm: &mut pm, t };
    // Contact shadow (and a puddle for wet subjects) sit on the ground, outside the mask.
    let half = (bounds.2 - bounds.0) / 2.0;
    let cx = (bounds.0 + bounds.2) / 2.0;
    if spec.context.material == Material::Wet {
        d.fill(&ellipse(cx, 0.0, half * 1.15, 4.2), [70, 130, 210], 0.7, None);
        d.fill(&ellipse(cx - half * 0.4, -0.5, half * 0.35, 0.9), WHITE, 0.7, None);
    } else {
        d.fill(&ellipse(cx, 0.0, half * 0.95, 2.8), INK, 0.28, None);
    }

    paint_body(&mut d, inst, main, bounds, &body_mask);
    // Details in order, consecutive ones of the same colour merged into one fill.
    let colour = |det: Detail| match det {
        Detail::Ink => INK,
        Detail::Light => [246, 242, 228],
        Detail::Shade => scale(main, 0.62),
        Detail::Pink => [232, 92, 120],
    };
    for run in fig.details.chunk_by(|a, b| a.1 == b.1) {
        let p = union(run.iter().map(|(p, _)| p.clone())).expect("non-empty run");
        d.fill(&p, colour(run[0].1), 1.0, None);
    }
    paint_mark(&mut d, &fig, inst, &body_mask);
    paint_material(&mut d, spec, bounds, &body_mask);
    let outline = mix(main, INK, 0.8);
    let stroke = Stroke { width: 1.6, ..Stroke::default() };
    let mut paint = Paint::default();
    paint.set_color(skia(outline));
    paint.anti_alias = true;
    d.pm.stroke_path(&body_path, &paint, &stroke, t, None);

    let mut subject_mask = body_mask;
    if let Some(p) = union(fig.details.iter().map(|(p, _)| p.clone())) {
        subject_mask.fill_path(&p, FillRule::Winding, true, t);
    }
    for (p, c) in accessory::pieces(spec.context.accessory, &fig) {
        d.fill(&p, c, 1.0, None);
        d.pm.stroke_path(&p, &ink_paint(), &Stroke { width: 0.8, ..Stroke::default() }, t, None);
        subject_mask.fill_path(&p, FillRule::Winding, true, t);
    }

    let n = size as usize;
    let mut buf: style::Buf =
        pm.data().chunks_exact(4).map(|p| [p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0]).collect();
    style::apply(spec.context.style, &mut buf, n, spec.seed);
    let raw: Vec<u8> = buf.iter().flat_map(|c| c.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)).collect();
    Render {
        image: RgbImage::from_raw(size, size, raw).expect("buffer matches size"),
        mask: GrayImage::from_raw(size, size, subject_mask.data().to_vec()).expect("mask matches size"),
        labels: Labels::of(spec),
    }
}

struct Draw<'a> {
    pm: &'a mut Pixmap,
    t: Transform,
}

impl Draw<'_> {
    fn fill(&mut self, p: &Path, c: Rgb, alpha: f32, clip: Option<&Mask>) {
        let mut paint = Paint::default();
        paint.set_color(skia_a(c, alpha));
        paint.anti_alias = true;
        self.pm.fill_path(p, &paint, FillRule::Winding, self.t, clip);
    }
}

fn ink_paint() -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(skia_a(INK, 0.85));
    paint.anti_alias = true;
    paint
}

/// Bounding box (x0, y0, x1, y1) of the body in subject units.
fn body_bounds(fig: &Figure) -> (f32, f32, f32, f32) {
    fig.body.iter().fold((f32::MAX, f32::MAX, f32::MIN, f32::MIN), |b, p| {
        let r = p.bounds();
        (b.0.min(r.left()), b.1.min(r.top()), b.2.max(r.right()), b.3.max(r.bottom()))
    })
}

fn paint_body(d: &mut Draw, inst: &Instance, main: Rgb, b: (f32, f32, f32, f32), mask: &Mask) {
    let sec = inst.palette.secondary;
    let (cx, cy) = ((b.0 + b.2) / 2.0, (b.1 + b.3) / 2.0);
    let cover = rect(b.0 - 2.0, b.1 - 2.0, b.2 - b.0 + 4.0, b.3 - b.1 + 4.0);
    if let Pattern::Gradient { angle } = inst.pattern {
        let (dx, dy) = (angle.to_radians().cos(), angle.to_radians().sin());
        let r = ((b.2 - b.0).powi(2) + (b.3 - b.1).powi(2)).sqrt() / 2.0;
        let shader = LinearGradient::new(
            Point::from_xy(cx - dx * r, cy - dy * r),
            Point::from_xy(cx + dx * r, cy + dy * r),
            vec![GradientStop::new(0.15, skia(main)), GradientStop::new(0.85, skia(sec))],
            SpreadMode::Pad,
            Transform::identity(),
        )
        .expect("valid gradient");
        let paint = Paint { shader, anti_alias: true, ..Paint::default() };
        d.pm.fill_path(&cover, &paint, FillRule::Winding, d.t, Some(mask));
        return;
    }
    d.fill(&cover, main, 1.0, Some(mask));
    let reach = (b.2 - b.0).max(b.3 - b.1) / 2.0 + 2.0;
    let (hw, hh) = ((b.2 - b.0) / 2.0 + 2.0, (b.3 - b.1) / 2.0 + 2.0);
    let t0 = d.t;
    let shapes: Vec<Path> = match inst.pattern {
        Pattern::Stripes { angle, period, duty } => {
            d.t = t0.pre_concat(Transform::from_rotate_at(angle, cx, cy));
            let n = (reach / period).ceil() as i32;
            (-n..=n)
                .map(|i| {
                    let x = cx + i as f32 * period;
                    rect(x, cy - reach, period * duty, 2.0 * reach)
                })
                .collect()
        }
        Pattern::Checker { angle, period } => {
            d.t = t0.pre_concat(Transform::from_rotate_at(angle, cx, cy));
            let n = (reach / period).ceil() as i32;
            (-n..=n)
                .flat_map(|i| (-n..=n).map(move |j| (i, j)))
                .filter(|(i, j)| (i + j).rem_euclid(2) == 0)
                .map(|(i, j)| {
                    let (x, y) = (cx + i as f32 * period, cy + j as f32 * period);
                    rect(x, y, period, period)
                })
                .collect()
        }
        Pattern::Dots { period, radius } => {
            let (nx, ny) = ((hw / period).ceil() as i32 + 1, (hh / (period * 0.9)).ceil() as i32 + 1);
            // Every other row offset by half a period: a hexagonal-ish dot grid.
            (-nx..=nx)
                .flat_map(|i| (-ny..=ny).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let x = cx + (i as f32 + 0.5 * (j.rem_euclid(2)) as f32) * period;
                    circle(x, cy + j as f32 * period * 0.9, radius)
                })
                .filter(|c| {
                    let r = c.bounds();
                    r.right() > b.0 && r.left() < b.2 && r.bottom() > b.1 && r.top() < b.3
                })
                .collect()
        }
        Pattern::Gradient { .. } => vec![],
    };
    if let Some(p) = union(shapes) {
        d.fill(&p, sec, 1.0, Some(mask));
    }
    d.t = t0;
}

fn paint_mark(d: &mut Draw, fig: &Figure, inst: &Instance, mask: &Mask) {
    let m = inst.mark;
    let (x0, y0, x1, y1) = fig.mark_region;
    let (cx, cy) = (x0 + (x1 - x0) * m.u, y0 + (y1 - y0) * m.v);
    let p = mark_path(m.kind, cx, cy, m.size / 2.0);
    d.fill(&p, inst.palette.accent, 1.0, Some(mask));
    let stroke = Stroke { width: 0.9, ..Stroke::default() };
    d.pm.stroke_path(&p, &ink_paint(), &stroke, d.t, Some(mask));
}

pub(crate) fn mark_path(kind: MarkKind, cx: f32, cy: f32, r: f32) -> Path {
    use std::f32::consts::{FRAC_PI_2, PI};
    match kind {
        MarkKind::Circle => circle(cx, cy, r * 0.85),
        MarkKind::Square => rect(cx - r * 0.8, cy - r * 0.8, r * 1.6, r * 1.6),
        MarkKind::Triangle => poly(&[(cx, cy - r), (cx + r * 0.95, cy + r * 0.7), (cx - r * 0.95, cy + r * 0.7)]),
        MarkKind::Diamond => poly(&[(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)]),
        MarkKind::Star => {
            let pts: Vec<(f32, f32)> = (0..10)
                .map(|i| {
                    let a = -FRAC_PI_2 + i as f32 * PI / 5.0;
                    let rr = if i % 2 == 0 { r } else { r * 0.45 };
                    (cx + rr * a.cos(), cy + rr * a.sin())
                })
                .collect();
            poly(&pts)
        }
        MarkKind::Cross => {
            let w = r * 0.36;
            poly(&[
                (cx - w, cy - r),
                (cx + w, cy - r),
                (cx + w, cy - w),
                (cx + r, cy - w),
                (cx + r, cy + w),
                (cx + w, cy + w),
                (cx + w, cy + r),
                (cx - w, cy + r),
                (cx - w, cy + w),
                (cx - r, cy + w),
                (cx - r, cy - w),
                (cx - w, cy - w),
            ])
        }
        MarkKind::Heart => {
            let mut pb = PathBuilder::new();
            pb.move_to(cx, cy + r);
            pb.cubic_to(cx - r * 1.4, cy, cx - r * 0.9, cy - r * 1.2, cx, cy - r * 0.4);
            pb.cubic_to(cx + r * 0.9, cy - r * 1.2, cx + r * 1.4, cy, cx, cy + r);
            pb.close();
            pb.finish().expect("valid heart")
        }
        MarkKind::Bolt => poly(&[
            (cx + r * 0.3, cy - r),
            (cx - r * 0.6, cy + r * 0.15),
            (cx - r * 0.05, cy + r * 0.15),
            (cx - r * 0.3, cy + r),
            (cx + r * 0.6, cy - r * 0.15),
            (cx + r * 0.05, cy - r * 0.15),
        ]),
    }
}

fn paint_material(d: &mut Draw, spec: &SceneSpec, b: (f32, f32, f32, f32), mask: &Mask) {
    let (w, h) = (b.2 - b.0, b.3 - b.1);
    match spec.context.material {
        Material::Plain => {}
        Material::Shiny => {
            // Glossy sheen (light top, dark bottom), a big specular blob with a sharp core
            // upper left, and a rim streak on the right.
            let shader = LinearGradient::new(
                Point::from_xy(0.0, b.1),
                Point::from_xy(0.0, b.3),
                vec![
                    GradientStop::new(0.0, skia_a(WHITE, 0.45)),
                    GradientStop::new(0.5, skia_a(WHITE, 0.0)),
                    GradientStop::new(1.0, skia_a(INK, 0.35)),
                ],
                SpreadMode::Pad,
                Transform::identity(),
            )
            .expect("valid sheen");
            let paint = Paint { shader, anti_alias: true, ..Paint::default() };
            d.pm.fill_path(&rect(b.0, b.1, w, h), &paint, FillRule::Winding, d.t, Some(mask));
            let (hx, hy) = (b.0 + w * 0.35, b.1 + h * 0.35);
            let r = w.min(h) * 0.4;
            let shader = RadialGradient::new(
                Point::from_xy(hx, hy),
                Point::from_xy(hx, hy),
                r,
                vec![
                    GradientStop::new(0.0, skia_a(WHITE, 0.95)),
                    GradientStop::new(0.5, skia_a(WHITE, 0.85)),
                    GradientStop::new(1.0, skia_a(WHITE, 0.0)),
                ],
                SpreadMode::Pad,
                Transform::identity(),
            )
            .expect("valid highlight");
            let paint = Paint { shader, anti_alias: true, ..Paint::default() };
            d.pm.fill_path(&circle(hx, hy, r), &paint, FillRule::Winding, d.t, Some(mask));
            d.fill(&ellipse(hx, hy, r * 0.45, r * 0.32), WHITE, 1.0, Some(mask));
            d.fill(&line(b.2 - w * 0.22, b.1 + h * 0.6, b.2 - w * 0.14, b.1 + h * 0.38, 2.6), WHITE, 0.85, Some(mask));
        }
        Material::Wet => {
            // Darker, bluish surface with droplets and drips.
            d.fill(&rect(b.0, b.1, w, h), [10, 30, 70], 0.38, Some(mask));
            let mut rng = spec.rng(3);
            for _ in 0..9 {
                let x = rng.random_range(b.0 + 3.0..b.2 - 3.0);
                let y = rng.random_range(b.1 + 3.0..b.3 - 3.0);
                d.fill(&circle(x, y, 2.2), [196, 226, 255], 0.95, Some(mask));
                d.fill(&circle(x - 0.6, y - 0.6, 0.8), WHITE, 1.0, Some(mask));
            }
            for _ in 0..3 {
                let x = rng.random_range(b.0 + 3.0..b.2 - 3.0);
                let y = rng.random_range(b.1 + 3.0..b.1 + h * 0.6);
                d.fill(&line(x, y, x, y + 6.0, 1.6), [196, 226, 255], 0.9, Some(mask));
            }
        }
    }
}
