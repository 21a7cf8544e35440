//! Contact sheet of the ToyBooth references: `--example toybooth_sheet -- OUT.png SIZE`.
fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "/tmp/toybooth.png".into());
    let size = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let imgs: Vec<_> = vstar_toyland::manifest()
        .subjects
        .iter()
        .flat_map(|s| s.references.iter().map(|r| vstar_toyland::render(r, size).image))
        .collect();
    vstar_toyland::contact_sheet(&imgs, 10).save(&out).expect("save");
    println!("{out}");
}
