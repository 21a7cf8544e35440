//! Renders per second (one thread): `cargo run -p vstar-toyland --release --example bench`.
use std::time::Instant;
use vstar_toyland::{render, sample_training_pair};

fn main() {
    let specs: Vec<_> = (0..2000).map(|s| sample_training_pair(s).spec).collect();
    for size in [32u32, 64, 128] {
        let n = if size == 128 { 500 } else { specs.len() };
        let t = Instant::now();
        let mut acc = 0u64;
        for s in &specs[..n] {
            acc += render(s, size).image.as_raw()[0] as u64;
        }
        let dt = t.elapsed().as_secs_f64();
        println!("{size:>4} px: {:>7.0} renders/s ({n} renders, checksum {acc})", n as f64 / dt);
    }
    let t = Instant::now();
    for s in 0..20000 {
        std::hint::black_box(sample_training_pair(s));
    }
    println!("training pairs (spec + caption): {:.0}/s", 20000.0 / t.elapsed().as_secs_f64());
}
