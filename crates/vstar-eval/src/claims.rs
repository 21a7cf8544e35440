//! The papers' sampling claims (METHODS.md section 1), each checked against a demo run's
//! measured results: reproduced, refuted, or not measured (a method missing), with the numbers
//! behind the verdict. Where a paper's wording is qualitative ("small identity cost"), the
//! threshold used is stated in the claim's text.

use crate::demo::MethodResult;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Claim {
    pub paper: &'static str,
    pub claim: &'static str,
    /// None: a method it needs was not run.
    pub reproduced: Option<bool>,
    pub evidence: String,
}

/// Identity may drop by at most this much (cosine) for a cost to count as "small".
pub const SMALL_IDENTITY_COST: f64 = 0.05;

/// The result named `m` (a demo), else the first of a sweep's cells of method `m` (ids
/// `m_axis=value`: list the paper's default first in a grid); the evidence names the cell.
fn get<'a>(r: &'a [MethodResult], m: &str) -> Option<&'a MethodResult> {
    let cell = format!("{m}_");
    r.iter().find(|x| x.method == m).or_else(|| r.iter().find(|x| x.method.starts_with(&cell)))
}

fn rows(r: &MethodResult) -> usize {
    r.cost_per_image.unet_rows
}

fn claim(
    paper: &'static str,
    claim: &'static str,
    needs: &[&str],
    r: &[MethodResult],
    test: impl Fn(&[&MethodResult]) -> (bool, String),
) -> Claim {
    let found: Option<Vec<&MethodResult>> = needs.iter().map(|m| get(r, m)).collect();
    match found {
        Some(f) => {
            let (ok, evidence) = test(&f);
            Claim { paper, claim, reproduced: Some(ok), evidence }
        }
        None => Claim { paper, claim, reproduced: None, evidence: format!("needs {}", needs.join(", ")) },
    }
}

fn id_rec(r: &MethodResult) -> String {
    format!("{}: identity {:.3}, recall {:.3}", r.method, r.identity, r.recall)
}

/// m[1] raises recall over m[0] while losing at most SMALL_IDENTITY_COST of identity.
fn recall_at_small_cost(m: &[&MethodResult]) -> (bool, String) {
    let ok = m[1].recall > m[0].recall && m[0].identity - m[1].identity <= SMALL_IDENTITY_COST;
    (ok, format!("{}; {}", id_rec(m[0]), id_rec(m[1])))
}

pub fn check(r: &[MethodResult]) -> Vec<Claim> {
    const STUDY: &str = "sampling study";
    const PG: &str = "personalization guidance";
    let mut v = vec![
        claim(
            STUDY,
            "mixed sampling raises prompt-element recall over concept sampling at a small identity cost (drop <= 0.05)",
            &["concept", "mixed"],
            r,
            recall_at_small_cost,
        ),
        claim(
            STUDY,
            "superclass sampling follows the prompt at least as well as concept sampling and keeps less identity",
            &["concept", "superclass"],
            r,
            |m| {
                (
                    m[1].recall >= m[0].recall && m[1].identity < m[0].identity,
                    format!("{}; {}", id_rec(m[0]), id_rec(m[1])),
                )
            },
        ),
        claim(
            STUDY,
            "masked sampling raises recall over concept sampling at a small identity cost (drop <= 0.05)",
            &["concept", "masked"],
            r,
            recall_at_small_cost,
        ),
        claim(PG, "PG with omega in [0, 0.3] raises identity over CFG", &["concept", "pg"], r, |m| {
            let omega = m[1].params.get("omega").and_then(|o| o.as_f64()).unwrap_or(f64::NAN);
            (m[1].identity > m[0].identity, format!("{}; {} (omega {omega})", id_rec(m[0]), id_rec(m[1])))
        }),
        claim(PG, "PG costs exactly what CFG costs (one batched call, no extra rows)", &["concept", "pg"], r, |m| {
            let same = m[0].cost_per_image.unet_calls == m[1].cost_per_image.unet_calls && rows(m[0]) == rows(m[1]);
            (same, format!("UNet calls x rows per image: concept {}, pg {}", rows(m[0]), rows(m[1])))
        }),
        claim(STUDY, "switching costs what concept sampling costs", &["concept", "switching"], r, |m| {
            (rows(m[0]) == rows(m[1]), format!("rows per image: concept {}, switching {}", rows(m[0]), rows(m[1])))
        }),
        claim(STUDY, "ProFusion makes 2x the UNet calls of mixed sampling", &["mixed", "profusion"], r, |m| {
            let (a, b) = (m[0].cost_per_image.unet_calls, m[1].cost_per_image.unet_calls);
            (b == 2 * a, format!("calls per image: mixed {a}, profusion {b}"))
        }),
    ];
    for m in ["mixed", "multi-stage", "masked", "photoswap"] {
        v.push(claim(
            STUDY,
            "mixed, multi-stage, masked and Photoswap cost 1.5x concept rows (3 rows vs 2)",
            &["concept", m],
            r,
            |x| {
                (
                    2 * rows(x[1]) == 3 * rows(x[0]),
                    format!("rows per image: concept {}, {m} {}", rows(x[0]), rows(x[1])),
                )
            },
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use vstar_diffusion::sampler::Cost;

    fn m(name: &str, identity: f64, recall: f64, calls: usize, rows: usize) -> MethodResult {
        MethodResult {
            method: name.into(),
            params: serde_json::Value::Null,
            identity,
            recall,
            superclass: 1.0,
            real: Default::default(),
            cost_per_image: Cost { unet_calls: calls, unet_rows: rows },
            seconds_per_image: 0.0,
            images: vec![],
        }
    }

    /// Verdicts follow the numbers: a claim flips when its numbers do; missing methods are
    /// "not measured", not "refuted".
    #[test]
    fn verdicts_follow_the_numbers() {
        let base = vec![m("concept", 0.80, 0.50, 30, 60), m("mixed", 0.78, 0.60, 30, 90), m("pg", 0.85, 0.5, 30, 60)];
        let c = check(&base);
        let find = |c: &[Claim], s: &str| c.iter().find(|x| x.claim.starts_with(s)).unwrap().reproduced;
        assert_eq!(find(&c, "mixed sampling raises"), Some(true));
        assert_eq!(find(&c, "PG with omega"), Some(true));
        assert_eq!(find(&c, "PG costs exactly"), Some(true));
        assert_eq!(find(&c, "ProFusion"), None);
        let worse = vec![m("concept", 0.80, 0.50, 30, 60), m("mixed", 0.70, 0.60, 30, 90), m("pg", 0.75, 0.5, 30, 90)];
        let c = check(&worse);
        assert_eq!(find(&c, "mixed sampling raises"), Some(false), "identity dropped 0.10");
        assert_eq!(find(&c, "PG with omega"), Some(false));
        assert_eq!(find(&c, "PG costs exactly"), Some(false));
    }

    /// A sweep's cells count for their method (its first grid point); pg++ cells are not pg's.
    #[test]
    fn sweep_cells_stand_for_their_method() {
        let r = vec![
            m("concept", 0.80, 0.50, 30, 60),
            m("pg++_omega=0", 0.70, 0.5, 30, 60),
            m("pg_omega=0", 0.85, 0.5, 30, 60),
            m("pg_omega=1", 0.80, 0.5, 30, 60),
        ];
        let c = check(&r);
        let pg = c.iter().find(|x| x.claim.starts_with("PG with omega")).unwrap();
        assert_eq!(pg.reproduced, Some(true), "{}", pg.evidence);
        assert!(pg.evidence.contains("pg_omega=0:"), "{}", pg.evidence);
        assert_eq!(c.iter().find(|x| x.claim.starts_with("mixed sampling")).unwrap().reproduced, None);
    }
}
