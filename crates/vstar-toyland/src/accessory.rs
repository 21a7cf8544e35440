//! Accessory geometry, placed on a figure's anchors. Sizes are clamped so an accessory stays
//! readable at 32 px whatever the subject's proportions.

use crate::color::{Rgb, INK, WHITE};
use crate::context::Accessory;
use crate::figure::Figure;
use crate::geom::{circle, ellipse, line, rect, rrect};
use tiny_skia::{Path, PathBuilder};

const HAT_RED: Rgb = [206, 24, 34];
const RAINBOW: [Rgb; 4] = [[230, 40, 40], [250, 200, 20], [40, 170, 60], [40, 90, 230]];

/// Pieces in drawing order, in subject units.
pub(crate) fn pieces(acc: Accessory, fig: &Figure) -> Vec<(Path, Rgb)> {
    match acc {
        Accessory::None => vec![],
        Accessory::RedHat => red_hat(fig),
        Accessory::SantaHat => santa_hat(fig),
        Accessory::Sunglasses => sunglasses(fig),
        Accessory::RainbowScarf => rainbow_scarf(fig),
    }
}

/// Brimmed hat: wide brim, tall crown, black band.
fn red_hat(fig: &Figure) -> Vec<(Path, Rgb)> {
    let a = fig.hat;
    let w = a.w.clamp(13.0, 22.0);
    let crown_h = 10.0;
    let cw = w * 0.72;
    vec![
        (ellipse(a.x, a.y, w * 0.75, 2.6), HAT_RED),
        (rrect(a.x - cw / 2.0, a.y - crown_h, cw, crown_h, 2.5), HAT_RED),
        (rect(a.x - cw / 2.0, a.y - 3.6, cw, 2.2), INK),
    ]
}

/// Floppy red cone bent to the side, white fur brim and pompom.
fn santa_hat(fig: &Figure) -> Vec<(Path, Rgb)> {
    let a = fig.hat;
    let w = a.w.clamp(13.0, 22.0);
    let (tipx, tipy) = (a.x + w * 0.75, a.y - 9.0);
    let mut pb = PathBuilder::new();
    pb.move_to(a.x - w * 0.5, a.y - 1.0);
    pb.quad_to(a.x - w * 0.1, a.y - 17.0, tipx, tipy);
    pb.quad_to(a.x + w * 0.2, a.y - 8.0, a.x + w * 0.5, a.y - 1.0);
    pb.close();
    vec![
        (pb.finish().expect("valid santa hat"), HAT_RED),
        (rrect(a.x - w * 0.58, a.y - 3.4, w * 1.16, 5.0, 2.5), WHITE),
        (circle(tipx, tipy + 0.5, 3.3), WHITE),
    ]
}

/// Two big dark lenses with a bridge and a white glint (visible on dark subjects too).
fn sunglasses(fig: &Figure) -> Vec<(Path, Rgb)> {
    let a = fig.eyes;
    let w = a.w.clamp(17.0, 24.0);
    let lw = w * 0.46;
    let lh = 7.0;
    let gap = w * 0.12;
    let glass: Rgb = [18, 18, 26];
    let mut out = vec![(line(a.x - gap, a.y - 1.0, a.x + gap, a.y - 1.0, 1.6), glass)];
    for cx in [a.x - gap - lw / 2.0, a.x + gap + lw / 2.0] {
        out.push((rrect(cx - lw / 2.0, a.y - lh / 2.0, lw, lh, 2.4), glass));
        out.push((line(cx - lw * 0.25, a.y - 1.2, cx - lw * 0.05, a.y - 2.2, 1.0), WHITE));
    }
    out
}

/// A striped band around the neck and a hanging end.
fn rainbow_scarf(fig: &Figure) -> Vec<(Path, Rgb)> {
    let a = fig.neck;
    let w = a.w.clamp(14.0, 40.0);
    let band_h = 2.2;
    let top = a.y - band_h * 2.0;
    let mut out = Vec::new();
    for (i, &c) in RAINBOW.iter().enumerate() {
        let y = top + i as f32 * band_h;
        out.push((rrect(a.x - w / 2.0, y, w, band_h + 0.3, 1.0), c));
    }
    // Hanging end: vertical stripes so it reads as the same scarf.
    let ex = a.x + w * 0.18;
    for (i, &c) in RAINBOW.iter().enumerate() {
        out.push((rect(ex + i as f32 * 1.8, top + 2.0, 1.9, 13.0), c));
    }
    out
}
