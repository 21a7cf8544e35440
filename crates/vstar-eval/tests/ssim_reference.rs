//! SSIM against scikit-image (tools/ref/ssim_cases.py wrote the fixture).
use std::path::PathBuf;

#[test]
fn matches_scikit_image() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ssim");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    for c in cases.as_array().unwrap() {
        let load = |k: &str| image::open(dir.join(c[k].as_str().unwrap())).unwrap().to_rgb8();
        let got = vstar_eval::ssim::ssim(&load("a"), &load("b")).unwrap();
        let want = c["ssim"].as_f64().unwrap();
        println!("{} vs {}: vstar {got:.6}, scikit-image {want:.6}", c["a"], c["b"]);
        assert!((got - want).abs() < 1e-6, "{c}: got {got}");
    }
}
