//! Per-scene and per-style render cost at 32 px (for tuning).
use std::time::Instant;
use vstar_toyland::{render, sample_training_pair, Scene, Style};

fn main() {
    let specs: Vec<_> = (0..1000).map(|s| sample_training_pair(s).spec).collect();
    for &scene in Scene::ALL {
        let t = Instant::now();
        for s in &specs {
            let mut s = s.clone();
            s.context.scene = scene;
            s.context.style = Style::Photo;
            std::hint::black_box(render(&s, 32));
        }
        println!("{:>14}: {:6.1} us", scene.name(), t.elapsed().as_secs_f64() * 1e3);
    }
    for &style in Style::ALL {
        let t = Instant::now();
        for s in &specs {
            let mut s = s.clone();
            s.context.scene = Scene::Studio;
            s.context.style = style;
            std::hint::black_box(render(&s, 32));
        }
        println!("{:>14}: {:6.1} us", style.name(), t.elapsed().as_secs_f64() * 1e3);
    }
}
