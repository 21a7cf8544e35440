//! The shipped Toyland (assets/toyland, the output of `vstar toyland pretrain --seed 0`):
//! complete, loads through the SD loader, and its judges see what renders show. The full
//! quality figures are `vstar toyland check`'s; this guards the committed files.

use candle_core::Device;
use vstar_eval::judges::Judges;
use vstar_nn::model::Model;

#[test]
fn shipped_model_loads_samples_and_judges() {
    let dir = vstar_nn::locate::resolve_model(None).expect("assets/toyland is shipped");
    assert!(vstar_toyland::pretrain::is_complete(&dir), "{}: incomplete", dir.display());
    let dev = Device::Cpu;
    let model = Model::load(&dir, &dev).unwrap();
    assert!(model.unused.is_empty(), "every shipped weight is used: {:?}", model.unused);
    let judges = Judges::load(&dir, &dev).unwrap();
    // The attribute oracle names the superclass of fresh renders of each class.
    let specs: Vec<_> = (0..16).map(|i| vstar_toyland::training::sample_training_pair(900_000 + i).spec).collect();
    let imgs = ((vstar_toyland::pretrain::data::images(&specs, &dev).unwrap() + 1.0).unwrap() / 2.0).unwrap();
    let right = judges
        .attributes(&imgs)
        .unwrap()
        .iter()
        .zip(&specs)
        .filter(|(p, s)| p[0] == s.instance.superclass.index())
        .count();
    // `toyland check` measured 98.5% on 480 held-out renders.
    assert!(right >= 12, "superclass right on {right}/16 renders");
    // A 10-step sample: finite images in [0, 1] that differ between seeds.
    let mut by_kind = std::collections::BTreeMap::new();
    let c = vstar_diffusion::pipeline::encode_prompt(&model, "a photo of a robot in the snow").unwrap();
    by_kind.insert(vstar_diffusion::guidance::PromptKind::Concept, c);
    let cfg = vstar_diffusion::guidance::Cfg { scale: 5.0 };
    let (imgs, _) = vstar_diffusion::pipeline::txt2img(&model, &cfg, by_kind, 2, 1, 10).unwrap();
    let v = imgs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
    let d = (imgs.get(0).unwrap() - imgs.get(1).unwrap()).unwrap().abs().unwrap().mean_all().unwrap();
    assert!(d.to_scalar::<f32>().unwrap() > 0.01, "two seeds gave the same image");
}
