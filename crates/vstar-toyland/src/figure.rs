//! Subject geometry per superclass. Subject units: origin at the bottom centre (on the
//! ground), x to the right, y down, so the subject lives at y < 0; about 60 units tall.

use crate::geom::{circle, cubic_stroke, ellipse, lerp, line, poly, quad_stroke, rrect, thick};
use crate::instance::ShapeParams;
use crate::superclass::Superclass;
use tiny_skia::{Path, PathBuilder};

/// How a detail is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Near-black (eyes, noses, clock hands).
    Ink,
    /// Off-white (clock face, robot eyes).
    Light,
    /// The main colour darkened (ears, pockets, the inside of a bowl).
    Shade,
    /// Pink/red accents (cat nose, robot antenna bulb).
    Pink,
}

/// Where an accessory goes: centre `x`, `y` and the width it should span.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Anchor {
    pub x: f32,
    pub y: f32,
    pub w: f32,
}

const fn anchor(x: f32, y: f32, w: f32) -> Anchor {
    Anchor { x, y, w }
}

pub(crate) struct Figure {
    /// Filled with the main colour and the pattern, outlined.
    pub body: Vec<Path>,
    pub details: Vec<(Path, Detail)>,
    pub hat: Anchor,
    pub eyes: Anchor,
    pub neck: Anchor,
    /// Box (x0, y0, x1, y1) the mark centre is placed in.
    pub mark_region: (f32, f32, f32, f32),
}

pub(crate) fn figure(sc: Superclass, p: &ShapeParams) -> Figure {
    let p = p.0.map(|v| v.clamp(0.0, 1.0));
    match sc {
        Superclass::Dog => dog(p),
        Superclass::Cat => cat(p),
        Superclass::Teapot => teapot(p),
        Superclass::Backpack => backpack(p),
        Superclass::Vase => vase(p),
        Superclass::Clock => clock(p),
        Superclass::Robot => robot(p),
        Superclass::Bowl => bowl(p),
    }
}

/// Side view facing right: long body on four legs, head with snout and a hanging ear.
fn dog(p: [f32; 4]) -> Figure {
    let bw = lerp(36.0, 46.0, p[0]);
    let bh = lerp(14.0, 19.0, p[1]);
    let leg = lerp(11.0, 17.0, p[2]);
    let hr = lerp(8.0, 10.5, p[3]);
    let (bx0, bx1) = (-bw / 2.0 - 5.0, bw / 2.0 - 5.0);
    let (by0, by1) = (-leg - bh, -leg);
    let (hx, hy) = (bx1 + 1.0, by0 - hr * 0.55);
    let mut body = vec![rrect(bx0, by0, bw, bh, bh * 0.45)];
    for x in [bx0 + 2.0, bx0 + 9.0, bx1 - 13.0, bx1 - 6.0] {
        body.push(rrect(x, by1 - 4.0, 5.0, leg + 4.0, 2.0));
    }
    body.push(line(bx1 - 6.0, by0 + 5.0, hx, hy, hr * 1.1));
    body.push(circle(hx, hy, hr));
    body.push(rrect(hx, hy - 1.5, hr + 6.0, hr * 0.95, 3.0));
    body.push(quad_stroke((bx0 + 3.0, by0 + 4.0), (bx0 - 7.0, by0 + 1.0), (bx0 - 8.0, by0 - 10.0), 3.6));
    let details = vec![
        (ellipse(hx - hr * 0.45, hy + hr * 0.3, 3.6, hr * 0.8), Detail::Shade),
        (circle(hx + 2.5, hy - 2.8, 1.9), Detail::Ink),
        (circle(hx + hr + 5.2, hy + 0.3, 2.4), Detail::Ink),
    ];
    Figure {
        body,
        details,
        hat: anchor(hx, hy - hr + 0.5, 2.0 * hr),
        eyes: anchor(hx + 3.5, hy - 2.8, hr * 1.7),
        neck: anchor(hx - 3.0, hy + hr * 0.85, hr * 1.7),
        mark_region: (bx0 + 6.0, by0 + 4.0, bx1 - 10.0, by1 - 4.0),
    }
}

/// Sitting, seen from the front: pear body, round head, pointed ears, curled tail.
fn cat(p: [f32; 4]) -> Figure {
    let bw = lerp(11.0, 15.0, p[0]);
    let bh = lerp(14.0, 18.0, p[1]);
    let hr = lerp(9.0, 11.5, p[2]);
    let ear = lerp(5.0, 9.0, p[3]);
    let hy = -2.0 * bh - hr * 0.55;
    let mut body = vec![
        ellipse(0.0, -bh, bw, bh),
        ellipse(-bw * 0.45, -2.2, 4.5, 2.6),
        ellipse(bw * 0.45, -2.2, 4.5, 2.6),
        circle(0.0, hy, hr),
    ];
    for s in [-1.0f32, 1.0] {
        body.push(poly(&[
            (s * hr * 0.98, hy - hr * 0.2),
            (s * hr * 0.78, hy - hr - ear),
            (s * hr * 0.12, hy - hr * 0.88),
        ]));
    }
    body.push(cubic_stroke((bw * 0.6, -3.0), (bw + 11.0, -5.0), (bw + 12.0, -bh), (bw + 6.0, -bh * 1.7), 4.0));
    let details = vec![
        (circle(-hr * 0.4, hy - 1.2, 2.0), Detail::Ink),
        (circle(hr * 0.4, hy - 1.2, 2.0), Detail::Ink),
        (poly(&[(-1.8, hy + hr * 0.25), (1.8, hy + hr * 0.25), (0.0, hy + hr * 0.25 + 2.2)]), Detail::Pink),
    ];
    Figure {
        body,
        details,
        hat: anchor(0.0, hy - hr * 0.85, hr * 1.3),
        eyes: anchor(0.0, hy - 1.2, hr * 1.75),
        neck: anchor(0.0, -2.0 * bh + 1.5, hr * 1.5),
        mark_region: (-bw * 0.5, -bh * 1.5, bw * 0.5, -bh * 0.5),
    }
}

/// Round belly, lid with knob, spout to the right, loop handle to the left.
fn teapot(p: [f32; 4]) -> Figure {
    let rx = lerp(16.0, 22.0, p[0]);
    let ry = lerp(11.0, 15.0, p[1]);
    let cy = -ry - 3.5;
    let tipx = rx + lerp(8.0, 14.0, p[2]);
    let tipy = cy - ry + 1.0;
    let body = vec![
        ellipse(0.0, cy, rx, ry),
        rrect(-rx * 0.55, -4.5, rx * 1.1, 4.5, 1.5),
        ellipse(0.0, cy - ry + 1.0, rx * 0.5, 4.5),
        circle(0.0, cy - ry - 4.0, 2.8),
        poly(&[(rx - 3.0, cy - 5.0), (tipx - 1.0, tipy - 2.0), (tipx + 2.0, tipy + 1.0), (rx - 1.0, cy + 7.0)]),
        thick(&ellipse(-rx - 1.5, cy - 1.0, lerp(5.0, 8.0, p[3]), ry * 0.62), 3.4),
    ];
    let details = vec![(line(-rx * 0.5, cy - ry + 3.2, rx * 0.5, cy - ry + 3.2, 1.2), Detail::Ink)];
    Figure {
        body,
        details,
        hat: anchor(0.0, cy - ry - 5.5, rx * 0.75),
        eyes: anchor(0.0, cy - ry * 0.3, rx * 1.1),
        neck: anchor(0.0, cy - ry + 4.0, rx * 1.15),
        mark_region: (-rx * 0.55, cy - ry * 0.1, rx * 0.55, cy + ry * 0.6),
    }
}

/// Tall rounded box with side straps, top handle and a darker front pocket.
fn backpack(p: [f32; 4]) -> Figure {
    let w = lerp(26.0, 34.0, p[0]);
    let h = lerp(34.0, 43.0, p[1]);
    let r = lerp(5.0, 10.0, p[2]);
    let ph = h * lerp(0.26, 0.38, p[3]);
    let (x0, y0) = (-w / 2.0, -h);
    let mut body = vec![rrect(x0, y0, w, h, r)];
    for s in [-1.0f32, 1.0] {
        body.push(quad_stroke(
            (s * (w / 2.0 - 2.0), y0 + 6.0),
            (s * (w / 2.0 + 7.0), -h / 2.0),
            (s * (w / 2.0 - 2.0), -6.0),
            3.2,
        ));
    }
    body.push(cubic_stroke((-5.0, y0 + 1.0), (-5.0, y0 - 7.0), (5.0, y0 - 7.0), (5.0, y0 + 1.0), 2.6));
    let details = vec![
        (rrect(-w * 0.36, -3.0 - ph, w * 0.72, ph, 3.0), Detail::Shade),
        (line(-w * 0.3, -3.0 - ph + 3.0, w * 0.3, -3.0 - ph + 3.0, 1.1), Detail::Ink),
    ];
    Figure {
        body,
        details,
        hat: anchor(0.0, y0 - 1.0, w * 0.7),
        eyes: anchor(0.0, y0 + h * 0.24, w * 0.75),
        neck: anchor(0.0, y0 + 4.5, w * 1.05),
        mark_region: (-w * 0.32, y0 + h * 0.2, w * 0.32, -ph - 6.0),
    }
}

/// Foot, wide belly, narrow neck, flared rim: one symmetric profile.
fn vase(p: [f32; 4]) -> Figure {
    let height = lerp(46.0, 60.0, p[2]);
    let bw = lerp(12.0, 19.0, p[0]);
    let nw = lerp(4.0, 7.0, p[1]);
    let rim = nw + 3.5;
    let hb = height * lerp(0.3, 0.5, p[3]);
    let fw = bw * 0.55;
    let mut pb = PathBuilder::new();
    pb.move_to(-fw, 0.0);
    pb.line_to(fw, 0.0);
    pb.cubic_to(fw + bw * 0.6, -1.0, bw, -hb * 0.5, bw, -hb);
    pb.cubic_to(bw, -hb - (height - hb) * 0.35, nw, -height + 16.0, nw, -height + 6.0);
    pb.line_to(rim, -height);
    pb.line_to(-rim, -height);
    pb.line_to(-nw, -height + 6.0);
    pb.cubic_to(-nw, -height + 16.0, -bw, -hb - (height - hb) * 0.35, -bw, -hb);
    pb.cubic_to(-bw, -hb * 0.5, -fw - bw * 0.6, -1.0, -fw, 0.0);
    pb.close();
    let body = vec![pb.finish().expect("valid vase")];
    let details = vec![(ellipse(0.0, -height + 0.6, rim - 1.2, 1.3), Detail::Shade)];
    Figure {
        body,
        details,
        hat: anchor(0.0, -height, rim * 2.0 + 3.0),
        eyes: anchor(0.0, -hb - (height - hb) * 0.15, bw * 1.5),
        neck: anchor(0.0, -height + 8.0, nw * 2.0 + 5.0),
        mark_region: (-bw * 0.5, -hb - 3.0, bw * 0.5, -hb * 0.45),
    }
}

/// Alarm clock: round case with two bells and legs, light face with hands.
fn clock(p: [f32; 4]) -> Figure {
    let r = lerp(16.0, 20.0, p[0]);
    let cy = -r - 6.0;
    let br = lerp(5.0, 7.0, p[1]);
    let fr = r * lerp(0.62, 0.78, p[2]);
    let body = vec![
        circle(0.0, cy, r),
        line(-r * 0.5, cy + r * 0.75, -r * 0.8, -0.5, 3.2),
        line(r * 0.5, cy + r * 0.75, r * 0.8, -0.5, 3.2),
        circle(-r * 0.72, cy - r * 0.82, br),
        circle(r * 0.72, cy - r * 0.82, br),
        line(0.0, cy - r, 0.0, cy - r - 4.0, 2.2),
        circle(0.0, cy - r - 5.0, 2.2),
    ];
    let a = p[3] * std::f32::consts::TAU;
    let mut details = vec![(circle(0.0, cy, fr), Detail::Light)];
    for k in 0..4 {
        let t = k as f32 * std::f32::consts::FRAC_PI_2;
        details.push((circle(t.sin() * fr * 0.8, cy - t.cos() * fr * 0.8, 1.1), Detail::Ink));
    }
    details.push((line(0.0, cy, a.sin() * fr * 0.5, cy - a.cos() * fr * 0.5, 2.0), Detail::Ink));
    let m = a * 7.0;
    details.push((line(0.0, cy, m.sin() * fr * 0.8, cy - m.cos() * fr * 0.8, 1.4), Detail::Ink));
    Figure {
        body,
        details,
        hat: anchor(0.0, cy - r - 2.0, r),
        eyes: anchor(0.0, cy - r * 0.3, r * 1.35),
        neck: anchor(0.0, cy + r * 0.85, r * 1.3),
        mark_region: (-r * 0.4, cy + r * 0.15, r * 0.4, cy + r * 0.45),
    }
}

/// Boxy head with antenna and eyes, wider body with arms, two legs.
fn robot(p: [f32; 4]) -> Figure {
    let hw = lerp(18.0, 25.0, p[0]);
    let hh = lerp(13.0, 17.0, p[1]);
    let ant = lerp(4.0, 9.0, p[2]);
    let bw = lerp(24.0, 32.0, p[3]);
    let (leg, bh) = (9.0, 19.0);
    let by0 = -leg - bh;
    let hy0 = by0 - 2.5 - hh;
    let body = vec![
        rrect(-bw / 2.0, by0, bw, bh, 2.5),
        rrect(-bw * 0.35 - 3.0, -leg - 1.0, 6.0, leg + 1.0, 1.5),
        rrect(bw * 0.35 - 3.0, -leg - 1.0, 6.0, leg + 1.0, 1.5),
        rrect(-3.0, by0 - 3.5, 6.0, 4.5, 1.0),
        rrect(-hw / 2.0, hy0, hw, hh, 2.5),
        line(0.0, hy0, 0.0, hy0 - ant, 1.8),
        line(-bw / 2.0, by0 + 3.0, -bw / 2.0 - 6.0, by0 + bh * 0.75, 4.0),
        line(bw / 2.0, by0 + 3.0, bw / 2.0 + 6.0, by0 + bh * 0.75, 4.0),
    ];
    let ey = hy0 + hh * 0.28;
    let details = vec![
        (circle(0.0, hy0 - ant - 1.0, 2.6), Detail::Pink),
        (rrect(-hw * 0.32 - 2.8, ey, 5.6, 4.6, 1.0), Detail::Light),
        (rrect(hw * 0.32 - 2.8, ey, 5.6, 4.6, 1.0), Detail::Light),
        (circle(-hw * 0.32, ey + 2.3, 1.3), Detail::Ink),
        (circle(hw * 0.32, ey + 2.3, 1.3), Detail::Ink),
        (line(-hw * 0.25, hy0 + hh * 0.8, hw * 0.25, hy0 + hh * 0.8, 1.2), Detail::Ink),
        (rrect(-bw * 0.3, by0 + bh * 0.2, bw * 0.6, bh * 0.5, 1.5), Detail::Shade),
    ];
    Figure {
        body,
        details,
        hat: anchor(0.0, hy0 + 0.5, hw * 0.8),
        eyes: anchor(0.0, ey + 2.3, hw * 0.95),
        neck: anchor(0.0, by0 - 1.0, hw * 0.95),
        mark_region: (-bw * 0.28, by0 + bh * 0.3, bw * 0.28, by0 + bh * 0.6),
    }
}

/// Wide, low bowl: rounded basin, dark opening, small foot.
fn bowl(p: [f32; 4]) -> Figure {
    let w = lerp(26.0, 35.0, p[0]);
    let d = lerp(13.0, 20.0, p[1]);
    let rr = lerp(3.0, 5.5, p[2]);
    let fw = w * lerp(0.25, 0.4, p[3]);
    let rim = -d - 4.5;
    let mut pb = PathBuilder::new();
    pb.move_to(-w, rim);
    pb.cubic_to(-w, rim + d * 0.9, -w * 0.5, -4.0, 0.0, -4.0);
    pb.cubic_to(w * 0.5, -4.0, w, rim + d * 0.9, w, rim);
    pb.close();
    let body = vec![pb.finish().expect("valid bowl"), ellipse(0.0, rim, w, rr), rrect(-fw, -5.5, 2.0 * fw, 5.5, 1.5)];
    let details = vec![(ellipse(0.0, rim, w - 2.5, rr - 1.2), Detail::Shade)];
    Figure {
        body,
        details,
        hat: anchor(0.0, rim - rr + 1.5, w * 0.6),
        eyes: anchor(0.0, rim + d * 0.38, w * 0.9),
        neck: anchor(0.0, rim + 3.5, w * 1.9),
        mark_region: (-w * 0.45, rim + d * 0.4, w * 0.45, rim + d * 0.75),
    }
}
