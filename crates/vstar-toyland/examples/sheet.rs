//! Write the world contact sheets: `cargo run -p vstar-toyland --release --example sheet -- DIR SIZE`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(String::as_str).unwrap_or("/tmp/toyland");
    let size = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    for p in vstar_toyland::render_world_sheet(std::path::Path::new(dir), size).expect("sheet") {
        println!("{}", p.display());
        // A 3x nearest-neighbour copy for looking at small tiles.
        let img = image::open(&p).expect("png").to_rgb8();
        let big =
            image::imageops::resize(&img, img.width() * 3, img.height() * 3, image::imageops::FilterType::Nearest);
        big.save(p.with_extension("x3.png")).expect("save");
    }
}
