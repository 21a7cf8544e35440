//! Scene backgrounds in image units (100 x 100). Each scene differs in colour AND in
//! structure (horizon, shapes), so it still reads in the grayscale sketch style.

use crate::color::{skia, skia_a, Rgb};
use crate::context::Scene;
use crate::geom::{circle, ellipse, line, poly, rect, union};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tiny_skia::{
    FillRule, GradientStop, LinearGradient, Paint, Path, PathBuilder, Pixmap, Point, SpreadMode, Transform,
};

/// Where subjects stand (image units from the top).
pub(crate) const GROUND_Y: f32 = 86.0;

pub(crate) struct Painter<'a> {
    pub pm: &'a mut Pixmap,
    pub t: Transform,
}

impl Painter<'_> {
    pub fn fill(&mut self, path: &Path, c: Rgb) {
        self.fill_a(path, c, 1.0);
    }

    pub fn fill_a(&mut self, path: &Path, c: Rgb, alpha: f32) {
        let mut paint = Paint::default();
        paint.set_color(skia_a(c, alpha));
        paint.anti_alias = true;
        self.pm.fill_path(path, &paint, FillRule::Winding, self.t, None);
    }

    /// Vertical gradient over the rectangle from y0 to y1.
    pub fn vgrad(&mut self, y0: f32, y1: f32, top: Rgb, bottom: Rgb) {
        let shader = LinearGradient::new(
            Point::from_xy(0.0, y0),
            Point::from_xy(0.0, y1),
            vec![GradientStop::new(0.0, skia(top)), GradientStop::new(1.0, skia(bottom))],
            SpreadMode::Pad,
            Transform::identity(),
        )
        .expect("valid gradient");
        let paint = Paint { shader, anti_alias: true, ..Paint::default() };
        self.pm.fill_path(&rect(0.0, y0, 100.0, y1 - y0), &paint, FillRule::Winding, self.t, None);
    }
}

pub(crate) fn draw(p: &mut Painter, scene: Scene, rng: &mut ChaCha8Rng) {
    match scene {
        Scene::Studio => p.vgrad(0.0, 100.0, [238, 237, 233], [200, 199, 195]),
        Scene::Snow => snow(p, rng),
        Scene::Beach => beach(p, rng),
        Scene::Jungle => jungle(p, rng),
        Scene::City => city(p, rng),
        Scene::PinkFabric => pink_fabric(p, rng),
        Scene::WoodenFloor => wooden_floor(p, rng),
        Scene::Mountains => mountains(p, rng),
        Scene::NightSky => night_sky(p, rng),
        Scene::Desert => desert(p, rng),
    }
}

/// Wavy-topped ground band from `y` down to the bottom.
fn ground(y: f32, amp: f32, rng: &mut ChaCha8Rng) -> Path {
    let mut pb = PathBuilder::new();
    pb.move_to(0.0, 100.0);
    pb.line_to(0.0, y + rng.random_range(-amp..amp));
    let n = 4;
    for i in 0..n {
        let x1 = (i + 1) as f32 * 100.0 / n as f32;
        let xc = x1 - 50.0 / n as f32;
        pb.quad_to(xc, y + rng.random_range(-amp..amp) * 2.0, x1, y + rng.random_range(-amp..amp));
    }
    pb.line_to(100.0, 100.0);
    pb.close();
    pb.finish().expect("valid ground")
}

fn snow(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.vgrad(0.0, 70.0, [160, 184, 214], [212, 222, 236]);
    let g = ground(64.0, 3.0, rng);
    p.fill(&g, [250, 251, 255]);
    let (mut flakes, mut halos) = (Vec::new(), Vec::new());
    for _ in 0..26 {
        let (x, y) = (rng.random_range(0.0..100.0), rng.random_range(0.0..100.0));
        let r = rng.random_range(1.1..2.0);
        flakes.push(circle(x, y, r));
        halos.push(circle(x, y, r + 0.6));
    }
    if let (Some(f), Some(h)) = (union(flakes), union(halos)) {
        p.fill_a(&h, [140, 160, 190], 0.25);
        p.fill(&f, [255, 255, 255]);
    }
}

fn beach(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.vgrad(0.0, 48.0, [120, 188, 244], [196, 228, 250]);
    p.fill(&rect(0.0, 46.0, 100.0, 18.0), [22, 104, 196]);
    let wy = rng.random_range(54.0..58.0);
    p.fill_a(&line(0.0, wy, 100.0, wy + 1.0, 1.4), [230, 244, 255], 0.8);
    p.fill(&ground(63.0, 1.5, rng), [238, 210, 146]);
    p.fill(&circle(rng.random_range(10.0..90.0), rng.random_range(9.0..20.0), 6.0), [255, 236, 120]);
}

fn jungle(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.pm.fill(skia([16, 74, 36]));
    const LEAF: [Rgb; 4] = [[46, 146, 54], [28, 112, 42], [88, 170, 66], [10, 56, 24]];
    for _ in 0..26 {
        let (x, y) = (rng.random_range(-5.0..105.0), rng.random_range(-5.0..92.0));
        let ang = rng.random_range(0.0..180.0);
        let leaf = ellipse(0.0, 0.0, rng.random_range(8.0..14.0), rng.random_range(3.0..5.5));
        let c = LEAF[rng.random_range(0..LEAF.len())];
        let t = p.t;
        p.t = t.pre_concat(Transform::from_translate(x, y).pre_rotate(ang));
        p.fill(&leaf, c);
        p.fill_a(&line(-9.0, 0.0, 9.0, 0.0, 0.7), [12, 50, 20], 0.7);
        p.t = t;
    }
    p.fill(&ground(84.0, 1.5, rng), [66, 50, 24]);
}

fn city(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.vgrad(0.0, 80.0, [84, 64, 150], [250, 160, 96]);
    let mut x = -rng.random_range(0.0..6.0);
    while x < 100.0 {
        let w = rng.random_range(8.0..15.0);
        let top = rng.random_range(22.0..58.0);
        let c: Rgb = if rng.random_bool(0.5) { [44, 42, 64] } else { [62, 58, 84] };
        p.fill(&rect(x, top, w - 0.8, 82.0 - top), c);
        let mut wy = top + 3.0;
        while wy < 76.0 {
            let mut wx = x + 2.0;
            while wx < x + w - 3.0 {
                if rng.random_bool(0.45) {
                    p.fill(&rect(wx, wy, 1.8, 2.2), [252, 222, 110]);
                }
                wx += 3.6;
            }
            wy += 5.0;
        }
        x += w;
    }
    p.fill(&rect(0.0, 80.0, 100.0, 20.0), [86, 86, 96]);
    p.fill(&rect(0.0, 80.0, 100.0, 1.2), [60, 60, 70]);
}

fn pink_fabric(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.pm.fill(skia([240, 158, 196]));
    for i in 0..7 {
        let x0 = i as f32 * 16.0 + rng.random_range(-6.0..6.0);
        let c: Rgb = if i % 2 == 0 { [252, 200, 224] } else { [206, 108, 156] };
        let mut pb = PathBuilder::new();
        pb.move_to(x0, -5.0);
        pb.cubic_to(
            x0 + rng.random_range(-14.0..14.0),
            35.0,
            x0 + rng.random_range(-14.0..14.0),
            65.0,
            x0 + rng.random_range(-10.0..10.0),
            105.0,
        );
        let fold = crate::geom::thick(&pb.finish().expect("valid fold"), rng.random_range(3.0..6.0));
        p.fill_a(&fold, c, 0.85);
    }
}

fn wooden_floor(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.fill(&rect(0.0, 0.0, 100.0, 58.0), [234, 218, 190]);
    p.fill(&rect(0.0, 54.0, 100.0, 4.0), [196, 172, 140]);
    p.vgrad(58.0, 100.0, [150, 92, 46], [178, 112, 58]);
    let ys = [58.0, 63.0, 69.0, 76.0, 84.0, 93.0];
    let mut seams = Vec::new();
    for w in ys.windows(2) {
        seams.push(rect(0.0, w[1] - 0.45, 100.0, 0.9));
        let mut x = rng.random_range(0.0..30.0);
        while x < 100.0 {
            seams.push(rect(x - 0.4, w[0], 0.8, w[1] - w[0]));
            x += rng.random_range(25.0..40.0);
        }
    }
    if let Some(s) = union(seams) {
        p.fill(&s, [98, 56, 24]);
    }
}

fn mountains(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.vgrad(0.0, 74.0, [96, 156, 228], [190, 216, 242]);
    let n = rng.random_range(3..5);
    for i in 0..n {
        let cx = (i as f32 + 0.5) * 100.0 / n as f32 + rng.random_range(-8.0..8.0);
        let peak = rng.random_range(20.0..36.0);
        let half = rng.random_range(22.0..32.0);
        p.fill(&poly(&[(cx - half, 74.0), (cx, peak), (cx + half, 74.0)]), [94, 104, 140]);
        let k = 0.3;
        p.fill(
            &poly(&[
                (cx - half * k * (74.0 - peak) / (74.0 - peak), peak + (74.0 - peak) * k),
                (cx, peak),
                (cx + half * k, peak + (74.0 - peak) * k),
                (cx, peak + (74.0 - peak) * k * 0.7),
            ]),
            [246, 248, 252],
        );
    }
    p.fill(&ground(73.0, 1.5, rng), [84, 156, 70]);
}

fn night_sky(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.vgrad(0.0, 100.0, [6, 10, 40], [34, 38, 100]);
    let stars = (0..30).map(|_| {
        let (x, y) = (rng.random_range(0.0..100.0), rng.random_range(0.0..75.0));
        circle(x, y, rng.random_range(0.8..1.6))
    });
    if let Some(s) = union(stars.collect::<Vec<_>>()) {
        p.fill(&s, [255, 250, 214]);
    }
    let (mx, my) = (rng.random_range(12.0..88.0), rng.random_range(10.0..24.0));
    p.fill(&circle(mx, my, 7.5), [248, 242, 196]);
    p.fill(&circle(mx + 3.5, my - 2.0, 6.5), [10, 14, 48]);
    p.fill(&ground(82.0, 2.0, rng), [18, 24, 36]);
}

fn desert(p: &mut Painter, rng: &mut ChaCha8Rng) {
    p.vgrad(0.0, 62.0, [252, 236, 184], [248, 206, 148]);
    p.fill(&circle(rng.random_range(10.0..90.0), rng.random_range(12.0..24.0), 9.0), [255, 248, 216]);
    p.fill(&ground(60.0, 4.0, rng), [232, 170, 92]);
    p.fill(&ground(74.0, 3.0, rng), [212, 138, 62]);
    // A cactus at one side, away from the subject.
    let cx = if rng.random_bool(0.5) { rng.random_range(5.0..12.0) } else { rng.random_range(88.0..95.0) };
    let cactus: Rgb = [52, 128, 60];
    p.fill(&line(cx, 76.0, cx, 56.0, 3.6), cactus);
    p.fill(&line(cx, 66.0, cx - 4.0, 62.0, 2.4), cactus);
    p.fill(&line(cx - 4.0, 62.0, cx - 4.0, 58.0, 2.4), cactus);
}
