//! Path helpers on top of tiny-skia (all coordinates in subject or image units).

use tiny_skia::{LineCap, LineJoin, Path, PathBuilder, Rect, Stroke};

pub(crate) fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32) -> Path {
    let rect = Rect::from_xywh(cx - rx, cy - ry, 2.0 * rx, 2.0 * ry).expect("positive ellipse");
    PathBuilder::from_oval(rect).expect("valid oval")
}

pub(crate) fn circle(cx: f32, cy: f32, r: f32) -> Path {
    ellipse(cx, cy, r, r)
}

pub(crate) fn rect(x: f32, y: f32, w: f32, h: f32) -> Path {
    PathBuilder::from_rect(Rect::from_xywh(x, y, w, h).expect("positive rect"))
}

/// Rounded rectangle (quadratic corners; radius clamped to half the shorter side).
pub(crate) fn rrect(x: f32, y: f32, w: f32, h: f32, r: f32) -> Path {
    let r = r.min(w / 2.0).min(h / 2.0).max(0.0);
    let mut pb = PathBuilder::new();
    pb.move_to(x + r, y);
    pb.line_to(x + w - r, y);
    pb.quad_to(x + w, y, x + w, y + r);
    pb.line_to(x + w, y + h - r);
    pb.quad_to(x + w, y + h, x + w - r, y + h);
    pb.line_to(x + r, y + h);
    pb.quad_to(x, y + h, x, y + h - r);
    pb.line_to(x, y + r);
    pb.quad_to(x, y, x + r, y);
    pb.close();
    pb.finish().expect("valid rrect")
}

pub(crate) fn poly(pts: &[(f32, f32)]) -> Path {
    let mut pb = PathBuilder::new();
    pb.move_to(pts[0].0, pts[0].1);
    for &(x, y) in &pts[1..] {
        pb.line_to(x, y);
    }
    pb.close();
    pb.finish().expect("valid polygon")
}

/// A round-capped stroke outline, as a fillable path (so it can join masks and patterns).
pub(crate) fn thick(path: &Path, width: f32) -> Path {
    let stroke = Stroke { width, line_cap: LineCap::Round, line_join: LineJoin::Round, ..Stroke::default() };
    path.stroke(&stroke, 4.0).expect("strokable path")
}

pub(crate) fn line(x0: f32, y0: f32, x1: f32, y1: f32, width: f32) -> Path {
    let mut pb = PathBuilder::new();
    pb.move_to(x0, y0);
    pb.line_to(x1, y1);
    thick(&pb.finish().expect("valid line"), width)
}

pub(crate) fn quad_stroke(p0: (f32, f32), c: (f32, f32), p1: (f32, f32), width: f32) -> Path {
    let mut pb = PathBuilder::new();
    pb.move_to(p0.0, p0.1);
    pb.quad_to(c.0, c.1, p1.0, p1.1);
    thick(&pb.finish().expect("valid curve"), width)
}

pub(crate) fn cubic_stroke(p0: (f32, f32), c0: (f32, f32), c1: (f32, f32), p1: (f32, f32), width: f32) -> Path {
    let mut pb = PathBuilder::new();
    pb.move_to(p0.0, p0.1);
    pb.cubic_to(c0.0, c0.1, c1.0, c1.1, p1.0, p1.1);
    thick(&pb.finish().expect("valid curve"), width)
}

pub(crate) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Many shapes as one path: one fill call instead of many (fills dominate render time).
pub(crate) fn union<I: IntoIterator<Item = Path>>(paths: I) -> Option<Path> {
    let mut pb = PathBuilder::new();
    for p in paths {
        pb.push_path(&p);
    }
    pb.finish()
}
