//! Regenerate `assets/toyland/` (tokenizer files, ToyBooth manifest):
//! `cargo run -p vstar-toyland --release --example assets [DIR]`.
fn main() {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/toyland");
    let dir = std::env::args().nth(1).unwrap_or_else(|| default.to_string());
    let (tok, tb) = vstar_toyland::write_assets(std::path::Path::new(&dir)).expect("assets");
    println!("{} ({} entries)\n{}\n{}", tok.vocab.display(), tok.vocab_size, tok.merges.display(), tb.display());
}
