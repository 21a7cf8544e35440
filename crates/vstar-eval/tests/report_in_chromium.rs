//! The HTML report opened in headless Chromium (Debian's `chromium`; `.ci/run` installs it):
//! the screenshot must show the trade-off plot's points and the image grid's pictures.

use std::path::Path;
use std::process::Command;
use vstar_diffusion::sampler::Cost;
use vstar_eval::demo::MethodResult;

fn browser() -> String {
    for b in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return b.to_string();
        }
    }
    panic!("no chromium found: install Debian's chromium (apt-get install chromium), as .ci/run does");
}

fn result(method: &str, identity: f64, recall: f64, image: &str) -> MethodResult {
    MethodResult {
        method: method.into(),
        params: serde_json::Value::Null,
        identity,
        recall,
        superclass: 1.0,
        real: [("dino".to_string(), identity / 2.0)].into(),
        cost_per_image: Cost { unet_calls: 30, unet_rows: 60 },
        seconds_per_image: 0.5,
        images: vec![vec![image.into()]],
    }
}

/// Pixels close to `rgb` in the screenshot.
fn count(img: &image::RgbImage, rgb: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0.iter().zip(rgb).all(|(a, b)| (*a as i32 - b as i32).abs() < 12)).count()
}

#[test]
fn report_renders_its_plot_and_grid() {
    let dir = std::env::temp_dir().join(format!("vstar-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    // Grid pictures in a colour nothing else on the page uses.
    image::RgbImage::from_pixel(32, 32, image::Rgb([0, 200, 0])).save(dir.join("images/a.png")).unwrap();
    let results = vec![result("concept", 0.8, 0.4, "images/a.png"), result("mixed", 0.7, 0.6, "images/a.png")];
    let summary = serde_json::json!({
        "model": "toyland", "subject": "dog_a", "token": "immen", "prompts": ["a photo of immen dog"],
        "images_per_prompt": 1, "sampling_steps": 30, "total_seconds": 1.0,
        "claims": vstar_eval::claims::check(&results)
    });
    let page = vstar_eval::report::write(&dir, &summary, &results).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"claims\"") && html.contains("mixed sampling raises prompt-element recall"));
    assert!(html.contains("not measured"), "ProFusion was not run: its claim is not measured");
    // The real-encoder metric each result carries is a column of the table and the CSV.
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert!(html.contains("<th>dino</th>") && csv.lines().next().unwrap().ends_with(",dino"), "{csv}");
    let shot = dir.join("shot.png");
    let out = Command::new(browser())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,1400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(Path::new(&shot).exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(&shot).unwrap().to_rgb8();
    let points = count(&img, [178, 34, 34]); // firebrick
    let pictures = count(&img, [0, 200, 0]);
    println!("screenshot {}x{}: {points} plot-point pixels, {pictures} grid-picture pixels", img.width(), img.height());
    assert!(points > 20, "the trade-off plot's points are not drawn");
    assert!(pictures > 2 * 64 * 64 / 2, "the grid's images are not shown");
}
