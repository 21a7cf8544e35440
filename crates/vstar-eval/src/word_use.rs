//! Does the base UNet read the class word? Its denoising loss on captioned renders with the
//! true caption, with the class word swapped for another class, and with the empty caption, at
//! a few timesteps, from the same latents and noise. If "swapped" equals "true" the UNet ignores
//! the class word (the shipped Toyland: equal to 4 digits while the caption as a whole helps).

use candle_core::{Result, Tensor};
use vstar_diffusion::noise::NoiseSource;
use vstar_diffusion::scheduler::SchedulerConfig;
use vstar_nn::model::Model;
use vstar_nn::Ctx;
use vstar_toyland::superclass::Superclass;
use vstar_toyland::training::sample_training_pair;
use vstar_train::denoise::Denoise;

pub const TIMESTEPS: [usize; 3] = [200, 500, 800];

/// (t, loss with the true caption, with the class word swapped, with the empty caption).
pub type WordUse = (usize, f64, f64, f64);

/// `caption` with its class word replaced by the class three places on, if it names one.
fn swap_class(caption: &str) -> Option<String> {
    let words: Vec<&str> = caption.split_whitespace().collect();
    let (i, k) = words
        .iter()
        .enumerate()
        .find_map(|(i, w)| Superclass::ALL.iter().position(|s| s.word() == *w).map(|k| (i, k)))?;
    let mut out: Vec<&str> = words.clone();
    out[i] = Superclass::ALL[(k + 3) % Superclass::ALL.len()].word();
    Some(out.join(" "))
}

/// The losses over `n` training-distribution renders (seeds no pretraining stage draws).
pub fn measure(model: &Model, n: usize, seed: u64) -> Result<Vec<WordUse>> {
    let dev = &model.device;
    let pairs: Vec<(vstar_toyland::spec::SceneSpec, String, String)> = (0..n as u64)
        .filter_map(|i| {
            let p = sample_training_pair(seed + i);
            let swapped = swap_class(&p.caption)?;
            p.polluted.is_none().then_some((p.spec, p.caption, swapped))
        })
        .collect();
    if pairs.is_empty() {
        candle_core::bail!("no captioned render named its class word");
    }
    let specs: Vec<_> = pairs.iter().map(|p| p.0.clone()).collect();
    let x = ((vstar_toyland::pretrain::data::images(&specs, dev)? + 1.0)? / 2.0)?;
    let z = vstar_diffusion::sampler::encode(model, &x)?;
    let sched: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone())
        .map_err(|e| candle_core::Error::Msg(format!("scheduler config: {e}")))?;
    let denoise = Denoise::new(&sched, None)?;
    let b = pairs.len();
    let side = (x.dim(2)?, x.dim(3)?);
    let contexts = [
        pairs.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(),
        pairs.iter().map(|p| p.2.as_str()).collect(),
        vec![""; b],
    ]
    .iter()
    .map(|prompts| Ok(model.encode(prompts, side, None)?.context))
    .collect::<Result<Vec<Tensor>>>()?;
    TIMESTEPS
        .iter()
        .map(|&t| {
            let eps = NoiseSource::new(seed ^ t as u64).randn(z.shape(), dev)?;
            let ts = vec![t; b];
            let (xt, target) = denoise.noisy_and_target(&z, &eps, &ts)?;
            let tt = Tensor::from_vec(vec![t as f32; b], b, dev)?;
            let loss = |ctx: &Tensor| -> Result<f64> {
                let pred = model.unet.forward(&xt, &tt, ctx, None, &mut Ctx::default())?;
                Ok(denoise.loss(&pred, &target, &ts)?.to_scalar::<f32>()? as f64)
            };
            Ok((t, loss(&contexts[0])?, loss(&contexts[1])?, loss(&contexts[2])?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_class_word_only() {
        assert_eq!(
            swap_class("a photo of a shiny dog in the snow").unwrap(),
            "a photo of a shiny backpack in the snow"
        );
        assert_eq!(swap_class("a sketch of a bowl").unwrap(), "a sketch of a teapot");
        assert!(swap_class("a photo of sks in the snow").is_none());
    }
}
