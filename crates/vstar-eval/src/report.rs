//! The run report: results.json, results.csv and a static HTML page (method table with cost,
//! the identity / recall trade-off as an inline SVG scatter, and image grids with the same
//! seeds side by side).

use crate::demo::MethodResult;
use candle_core::{Error, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use vstar_diffusion::images::write_atomic;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Indices of the points no other point beats on both axes (higher is better), by x.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let (x, y) = points[i];
            !points.iter().any(|&(a, b)| a >= x && b >= y && (a > x || b > y))
        })
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    front
}

/// Identity (x) vs recall (y), one labelled point per method (configuration), and each
/// method's Pareto front across its configurations.
fn scatter(results: &[MethodResult]) -> String {
    let (w, h, pad) = (520.0, 360.0, 50.0);
    let xs: Vec<f64> = results.iter().map(|r| r.identity).collect();
    let ys: Vec<f64> = results.iter().map(|r| r.recall).collect();
    let range = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let m = ((hi - lo) * 0.1).max(0.01);
        (lo - m, hi + m)
    };
    let ((x0, x1), (y0, y1)) = (range(&xs), range(&ys));
    let px = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let py = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
    let mut s = format!(r#"<svg id="tradeoff" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">"#);
    let _ = write!(
        s,
        r#"<rect x="{pad}" y="{pad}" width="{}" height="{}" fill="none" stroke="grey"/>"#,
        w - 2.0 * pad,
        h - 2.0 * pad
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">identity similarity (subject fidelity) &#8594;</text>"#,
        w / 2.0,
        h - 12.0
    );
    let _ = write!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">prompt-element recall (text fidelity) &#8594;</text>"#,
        h / 2.0,
        h / 2.0
    );
    let _ = write!(
        s,
        r#"<text x="{pad}" y="{}" font-size="11">{x0:.3}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{x1:.3}</text>"#,
        h - pad + 14.0,
        w - pad,
        h - pad + 14.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{y0:.2}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{y1:.2}</text>"#,
        pad - 4.0,
        h - pad,
        pad - 4.0,
        pad + 10.0
    );
    // Each method's Pareto front over its grid points (sweeps: `mixed_ws=3.5`, ...).
    let mut groups: std::collections::BTreeMap<&str, Vec<&MethodResult>> = Default::default();
    for r in results {
        groups.entry(r.method.split('_').next().unwrap_or(&r.method)).or_default().push(r);
    }
    for g in groups.values().filter(|g| g.len() > 1) {
        let pts: Vec<(f64, f64)> = g.iter().map(|r| (r.identity, r.recall)).collect();
        let line: Vec<String> =
            pareto_front(&pts).iter().map(|&i| format!("{:.1},{:.1}", px(pts[i].0), py(pts[i].1))).collect();
        let _ = write!(s, r#"<polyline class="front" points="{}" fill="none" stroke="steelblue"/>"#, line.join(" "));
    }
    for r in results {
        let (x, y) = (px(r.identity), py(r.recall));
        let _ = write!(
            s,
            r#"<circle class="point" cx="{x:.1}" cy="{y:.1}" r="4" fill="firebrick"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            x + 6.0,
            y - 4.0,
            esc(&r.method)
        );
    }
    s + "</svg>"
}

const COLUMNS: [&str; 7] =
    ["method", "identity", "recall", "superclass", "unet_calls_per_image", "unet_rows_per_image", "seconds_per_image"];

/// The real-encoder metrics (clip_t, clip_i, dino) any result has: extra columns.
fn real_columns(results: &[MethodResult]) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = results.iter().flat_map(|r| r.real.keys()).collect();
    names.into_iter().cloned().collect()
}

/// One method's row, formatted (the CSV and the HTML table share it); `real` names the extra
/// columns, empty where this result lacks the metric.
fn cells(r: &MethodResult, real: &[String]) -> Vec<String> {
    let mut row = vec![
        r.method.clone(),
        format!("{:.4}", r.identity),
        format!("{:.4}", r.recall),
        format!("{:.3}", r.superclass),
        r.cost_per_image.unet_calls.to_string(),
        r.cost_per_image.unet_rows.to_string(),
        format!("{:.3}", r.seconds_per_image),
    ];
    row.extend(real.iter().map(|k| r.real.get(k).map_or(String::new(), |v| format!("{v:.4}"))));
    row
}

/// `vstar report DIR`: a sweep folder's finished cells as a report (missing cells named in
/// the log and on the page); returns the page and the missing cell ids.
pub fn report_dir(dir: &Path) -> Result<(PathBuf, Vec<String>)> {
    let (mut about, results, missing) = crate::sweep::collect(dir)?;
    if results.is_empty() {
        return Err(Error::Msg(format!(
            "{}: no finished cells yet (cells/*.json); run `vstar sweep` first",
            dir.display()
        )));
    }
    about["claims"] = serde_json::to_value(crate::claims::check(&results)).map_err(|e| Error::Msg(e.to_string()))?;
    about["missing"] = serde_json::json!(missing);
    about["results"] = serde_json::to_value(&results).map_err(|e| Error::Msg(e.to_string()))?;
    let n: f64 =
        results.iter().map(|r| r.seconds_per_image * r.images.iter().map(|row| row.len()).sum::<usize>() as f64).sum();
    about["total_seconds"] = serde_json::json!(n);
    Ok((write(dir, &about, &results)?, missing))
}

/// Writes results.json, results.csv and index.html into `dir`; returns the page's path.
pub fn write(dir: &Path, summary: &serde_json::Value, results: &[MethodResult]) -> Result<PathBuf> {
    let json = serde_json::to_string_pretty(summary).map_err(|e| Error::Msg(e.to_string()))?;
    write_atomic(&dir.join("results.json"), json.as_bytes())?;
    let real = real_columns(results);
    let header: Vec<&str> = COLUMNS.iter().copied().chain(real.iter().map(String::as_str)).collect();
    let mut csv = header.join(",") + "\n";
    for r in results {
        csv += &(cells(r, &real).join(",") + "\n");
    }
    write_atomic(&dir.join("results.csv"), csv.as_bytes())?;

    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>vstar report</title><style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}img.s{width:64px;height:64px;image-rendering:pixelated;margin:1px}</style></head><body>");
    let _ = write!(h, "<h1>vstar report</h1><p>Model {}; subject {} (token <code>{}</code>); {} prompts x {} images, DDIM {} steps; total {:.0} s.</p>",
        esc(summary["model"].as_str().unwrap_or("")), esc(summary["subject"].as_str().unwrap_or("")), esc(summary["token"].as_str().unwrap_or("")),
        summary["prompts"].as_array().map_or(0, |a| a.len()), summary["images_per_prompt"], summary["sampling_steps"], summary["total_seconds"].as_f64().unwrap_or(0.0));
    if let Some(m) = summary["missing"].as_array().filter(|m| !m.is_empty()) {
        let ids: Vec<&str> = m.iter().filter_map(|v| v.as_str()).collect();
        let _ = write!(h, "<p id=\"missing\"><b>{} cells not finished:</b> {}</p>", ids.len(), esc(&ids.join(", ")));
    }
    h += "<h2>Subject fidelity vs text fidelity</h2>";
    h += &scatter(results);
    h += "<h2>Methods</h2><table id=\"methods\"><tr>";
    h += &header.iter().map(|c| format!("<th>{}</th>", c.replace('_', " "))).collect::<String>();
    h += "</tr>";
    for r in results {
        let row: String = cells(r, &real).iter().map(|c| format!("<td>{}</td>", esc(c))).collect();
        let _ = write!(h, "<tr>{row}</tr>");
    }
    h += "</table><h2>Images (same seed per column)</h2><table id=\"grid\"><tr><th>method</th>";
    let prompts = summary["prompts"].as_array().cloned().unwrap_or_default();
    for p in &prompts {
        let _ = write!(h, "<th style=\"font-size:10px;max-width:140px\">{}</th>", esc(p.as_str().unwrap_or("")));
    }
    h += "</tr>";
    for r in results {
        let _ = write!(h, "<tr><td>{}</td>", esc(&r.method));
        for row in &r.images {
            h += "<td>";
            for f in row {
                let _ = write!(h, "<img class=\"s\" src=\"{}\">", esc(f));
            }
            h += "</td>";
        }
        h += "</tr>";
    }
    h += "</table><h2>The papers' claims on this run</h2><table id=\"claims\"><tr><th>paper</th><th>claim</th><th>verdict</th><th>numbers</th></tr>";
    for c in summary["claims"].as_array().cloned().unwrap_or_default() {
        let verdict = match c["reproduced"].as_bool() {
            Some(true) => "reproduced",
            Some(false) => "not reproduced",
            None => "not measured",
        };
        let cell = |k: &str| esc(c[k].as_str().unwrap_or(""));
        let _ = write!(h, "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{verdict}</td><td style=\"text-align:left\">{}</td></tr>", cell("paper"), cell("claim"), cell("evidence"));
    }
    h += "</table></body></html>";
    let page = dir.join("index.html");
    write_atomic(&page, h.as_bytes())?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::pareto_front;

    #[test]
    fn pareto_front_keeps_the_undominated_points_by_x() {
        let pts = [(0.5, 0.9), (0.6, 0.6), (0.4, 0.5), (0.9, 0.2), (0.6, 0.6), (0.55, 0.95)];
        // (0.5, 0.9) loses to (0.55, 0.95); (0.4, 0.5) to several; the two (0.6, 0.6) tie.
        assert_eq!(pareto_front(&pts), vec![5, 1, 4, 3]);
    }
}
