//! Guidance methods by name, with their flags checked: the one place the CLI, sweeps and the
//! demo turn a method name into a `Guidance`.

use super::{
    Autoguidance, Cfg, CfgPlusPlus, Guidance, MaskSource, Masked, Mixed, MultiStage, PersonalizationGuidance,
    Photoswap, ProFusion, PromptKind, SubjectAgnostic, Superclass, Switching,
};
use crate::scheduler::{Ddim, SchedulerConfig, SchedulerKind};
use candle_core::{Error, Result};

/// Every method `build` knows, in the order the CLI lists them.
pub const METHODS: [&str; 14] = [
    "cfg",
    "concept",
    "superclass",
    "mixed",
    "switching",
    "multi-stage",
    "masked",
    "profusion",
    "photoswap",
    "pg",
    "autoguidance",
    "cfg++",
    "pg++",
    "subject-agnostic",
];

/// The sampler a method will run with (CFG++ / PG++ need DDIM's coefficients).
pub struct SamplerSetup<'a> {
    pub kind: SchedulerKind,
    pub config: &'a SchedulerConfig,
    pub steps: usize,
}

/// Method flags (CLI.md names in comments).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodParams {
    /// --guidance: CFG scale w (also wC + wS's total for mixed methods when unset).
    pub guidance: f64,
    /// --ws: superclass weight of mixed / multi-stage.
    pub ws: f64,
    /// --wc: concept weight of mixed / multi-stage.
    pub wc: f64,
    /// --t-sw: switch step of switching / multi-stage.
    pub t_sw: usize,
    /// --omega: PG's null-branch adapter scale.
    pub omega: f64,
    /// --ag-scale: autoguidance's l.
    pub ag_scale: f64,
    /// --q: masked sampling's quantile, in (0, 1).
    pub q: f64,
    /// --mask-source: masked sampling reads the class word (superclass branch) or the placeholder.
    pub mask_source: MaskSource,
    /// Token positions of (class word in the superclass prompt, placeholder in the concept
    /// prompt), found by the caller's tokenizer; masked sampling needs them.
    pub token_positions: Option<(usize, usize)>,
    /// --r, --w-ref, --refine-repeats: ProFusion's refinement.
    pub r: f64,
    pub w_ref: f64,
    pub refine_repeats: usize,
    /// --photoswap-steps: (t_SF, t_CM, t_SM).
    pub photoswap_steps: (usize, usize, usize),
    /// --sag-scale: subject-agnostic guidance's l.
    pub sag_scale: f64,
    /// --allow-extrapolation: omega outside [0, 1].
    pub allow_extrapolation: bool,
}

impl Default for MethodParams {
    fn default() -> Self {
        Self {
            guidance: 7.5,
            ws: 3.5,
            wc: 3.5,
            t_sw: 5,
            omega: 0.25,
            ag_scale: 2.0,
            q: 0.5,
            mask_source: MaskSource::ClassWord,
            token_positions: None,
            r: 0.3,
            w_ref: 7.0,
            refine_repeats: 1,
            photoswap_steps: (10, 20, 25),
            sag_scale: 1.0,
            allow_extrapolation: false,
        }
    }
}

/// The numeric parameters a sweep may set by name (the CLI flag without `--`, `-` as `_`).
pub const NUMERIC_PARAMS: [&str; 11] =
    ["guidance", "ws", "wc", "t_sw", "omega", "ag_scale", "q", "r", "w_ref", "refine_repeats", "sag_scale"];

impl MethodParams {
    /// Sets a numeric parameter by name; counts (t_sw, refine_repeats) must be whole numbers.
    pub fn set(&mut self, name: &str, v: f64) -> Result<()> {
        let count = |v: f64| -> Result<usize> {
            if v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(Error::Msg(format!("`{name}` must be a whole number, got {v}")))
            }
        };
        match name {
            "guidance" => self.guidance = v,
            "ws" => self.ws = v,
            "wc" => self.wc = v,
            "t_sw" => self.t_sw = count(v)?,
            "omega" => self.omega = v,
            "ag_scale" => self.ag_scale = v,
            "q" => self.q = v,
            "r" => self.r = v,
            "w_ref" => self.w_ref = v,
            "refine_repeats" => self.refine_repeats = count(v)?,
            "sag_scale" => self.sag_scale = v,
            _ => {
                return Err(Error::Msg(format!(
                    "unknown method parameter `{name}`; valid: {}",
                    NUMERIC_PARAMS.join(", ")
                )))
            }
        }
        Ok(())
    }
}

pub fn build(name: &str, p: &MethodParams, sampler: &SamplerSetup) -> Result<Box<dyn Guidance>> {
    if !p.allow_extrapolation && !(0.0..=1.0).contains(&p.omega) {
        return Err(Error::Msg(format!(
            "--omega {} is outside [0, 1]; pass --allow-extrapolation to use it anyway",
            p.omega
        )));
    }
    Ok(match name {
        "cfg" | "concept" => Box::new(Cfg { scale: p.guidance }),
        "superclass" => Box::new(Superclass { scale: p.guidance }),
        "mixed" => Box::new(Mixed { ws: p.ws, wc: p.wc }),
        "switching" => Box::new(Switching { scale: p.guidance, t_sw: p.t_sw }),
        "multi-stage" => Box::new(MultiStage { ws: p.ws, wc: p.wc, t_sw: p.t_sw }),
        "pg" => Box::new(PersonalizationGuidance { scale: p.guidance, omega: p.omega as f32 }),
        "autoguidance" => Box::new(Autoguidance { ag_scale: p.ag_scale, cfg_scale: p.guidance }),
        "masked" => {
            if !(p.q > 0.0 && p.q < 1.0) {
                return Err(Error::Msg(format!("--q {} must be in (0, 1)", p.q)));
            }
            let (class_pos, token_pos) = p.token_positions.ok_or_else(|| {
                Error::Msg(
                    "--method masked needs the class word in the superclass prompt and the placeholder in the prompt"
                        .into(),
                )
            })?;
            Box::new(Masked {
                ws: p.ws,
                wc: p.wc,
                t_sw: p.t_sw,
                q: p.q,
                source: p.mask_source,
                class_pos,
                token_pos,
                masks: Default::default(),
            })
        }
        "profusion" => {
            if sampler.kind != SchedulerKind::Ddim {
                return Err(Error::Msg(
                    "--method profusion works with the DDIM scheduler only: pass --scheduler ddim".into(),
                ));
            }
            if p.r < 0.0 {
                return Err(Error::Msg(format!("--r {} must be at least 0", p.r)));
            }
            let mixed = Mixed { ws: p.ws, wc: p.wc };
            Box::new(ProFusion::new(mixed, p.w_ref, p.r, p.refine_repeats, &Ddim::new(sampler.config, sampler.steps)?)?)
        }
        "photoswap" => {
            let (t_sf, t_cm, t_sm) = p.photoswap_steps;
            Box::new(Photoswap { scale: p.guidance, t_sf, t_cm, t_sm })
        }
        "subject-agnostic" => Box::new(SubjectAgnostic { sag_scale: p.sag_scale, cfg_scale: p.guidance }),
        "cfg++" | "pg++" => {
            if sampler.kind != SchedulerKind::Ddim {
                return Err(Error::Msg(format!(
                    "--method {name} works with the DDIM scheduler only: pass --scheduler ddim"
                )));
            }
            if !(0.0..=1.0).contains(&p.guidance) {
                return Err(Error::Msg(format!(
                    "--method {name}: --guidance is CFG++'s lambda, in [0, 1] (paper 0.4); got {}",
                    p.guidance
                )));
            }
            let omega = if name == "pg++" { p.omega as f32 } else { 1.0 };
            Box::new(CfgPlusPlus::new(p.guidance, omega, &Ddim::new(sampler.config, sampler.steps)?)?)
        }
        other => {
            return Err(Error::Msg(format!("--method {other}: unknown; valid methods: {}", METHODS.join(", "))));
        }
    })
}

/// Whether a method's rows use the superclass prompt (at any step).
pub fn uses(g: &dyn Guidance, kind: PromptKind, steps: usize) -> bool {
    (0..steps).any(|i| g.branches(i, steps).iter().any(|b| b.prompt == kind))
}

/// Methods that personalize (all but plain `cfg` and `superclass`): their prompt must hold
/// the placeholder.
pub fn is_concept_method(name: &str) -> bool {
    !matches!(name, "cfg" | "superclass")
}

/// The superclass prompt: the concept prompt with the placeholder token removed ("a sks dog
/// in the snow" -> "a dog in the snow").
pub fn superclass_prompt(prompt: &str, token: &str) -> Result<String> {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    if !words.contains(&token) {
        return Err(Error::Msg(format!(
            "the prompt {prompt:?} has no placeholder {token:?}: a concept method needs it (e.g. \"a photo of {token} dog\")"
        )));
    }
    Ok(words.into_iter().filter(|w| *w != token).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddim(config: &SchedulerConfig) -> SamplerSetup<'_> {
        SamplerSetup { kind: SchedulerKind::Ddim, config, steps: 10 }
    }

    #[test]
    fn builds_every_listed_method_and_refuses_others() {
        let c = SchedulerConfig::stable_diffusion();
        let p = MethodParams { guidance: 0.4, token_positions: Some((2, 3)), ..Default::default() };
        let names: Vec<&str> = METHODS.iter().map(|m| build(m, &p, &ddim(&c)).unwrap().name()).collect();
        // "concept" is CFG with the concept prompt.
        let want: Vec<&str> = METHODS.iter().map(|m| if *m == "concept" { "cfg" } else { m }).collect();
        assert_eq!(names, want);
        let e = build("magic", &p, &ddim(&c)).err().unwrap().to_string();
        assert!(e.contains("valid methods: cfg, concept"), "{e}");
        let e = build("pg", &MethodParams { omega: 1.5, ..Default::default() }, &ddim(&c)).err().unwrap().to_string();
        assert!(e.contains("--allow-extrapolation"));
        assert!(build("pg", &MethodParams { omega: 1.5, allow_extrapolation: true, ..Default::default() }, &ddim(&c))
            .is_ok());
        let euler = SamplerSetup { kind: SchedulerKind::Euler, config: &c, steps: 10 };
        assert!(build("cfg++", &p, &euler).err().unwrap().to_string().contains("DDIM scheduler only"));
        assert!(build("profusion", &p, &euler).err().unwrap().to_string().contains("DDIM scheduler only"));
        for q in [0.0, 1.0, 1.2] {
            let e = build("masked", &MethodParams { q, ..Default::default() }, &ddim(&c)).err().unwrap().to_string();
            assert!(e.contains(&format!("--q {q} must be in (0, 1)")), "{e}");
        }
        assert!(build("cfg++", &MethodParams::default(), &ddim(&c)).err().unwrap().to_string().contains("in [0, 1]"));
    }

    #[test]
    fn parameters_set_by_name() {
        let mut p = MethodParams::default();
        for n in NUMERIC_PARAMS {
            p.set(n, 3.0).unwrap();
        }
        assert_eq!((p.ws, p.t_sw, p.omega, p.refine_repeats), (3.0, 3, 3.0, 3));
        assert!(p.set("t_sw", 2.5).unwrap_err().to_string().contains("whole number"));
        assert!(p.set("magic", 1.0).unwrap_err().to_string().contains("valid: guidance, ws"));
    }

    #[test]
    fn superclass_prompt_drops_the_placeholder() {
        assert_eq!(superclass_prompt("a sks dog in the snow", "sks").unwrap(), "a dog in the snow");
        assert!(superclass_prompt("a dog", "sks").err().unwrap().to_string().contains("no placeholder"));
    }
}
