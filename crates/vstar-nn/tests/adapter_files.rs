//! Adapter files other than LoRA (which has its own golden test): textual-inversion files in
//! the diffusers and A1111 layouts, dense DreamBooth / Custom Diffusion files and SVDiff shifts
//! written and read back into the tiny SD-1.5-shaped fixture, and `load_adapter`'s errors.

use candle_core::{Device, Tensor};
use std::path::PathBuf;
use vstar_nn::adapters::dense::{save_dense, DenseFormat};
use vstar_nn::adapters::embeddings::{read_embeddings, save_embeddings, EmbeddingFormat};
use vstar_nn::adapters::load_adapter;
use vstar_nn::adapters::svdiff::save_shifts;
use vstar_nn::model::Model;

fn model() -> Model {
    Model::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd15-tiny"), &Device::Cpu)
        .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-adapter-files-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn context(m: &Model, prompt: &str) -> Tensor {
    m.encode(&[prompt], (128, 128), None).unwrap().context
}

fn diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn embeddings_round_trip_in_both_layouts() {
    let dir = tmp("ti");
    let d = model().text[0].encoder.config.hidden_size;
    let rows = Tensor::randn(0f32, 1.0, (2, d), &Device::Cpu).unwrap();
    for (file, fmt) in
        [("learned_embeds.safetensors", EmbeddingFormat::Diffusers), ("<toy>.safetensors", EmbeddingFormat::A1111)]
    {
        let path = dir.join(file);
        save_embeddings(&path, &[("<toy>".to_string(), rows.clone())], fmt).unwrap();
        let read = read_embeddings(&path).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0, "<toy>");
        assert_eq!(diff(&read[0].1, &rows), 0.0);
        let mut m = model();
        let before = context(&m, "a photo of <toy>");
        assert_eq!(load_adapter(&path, &mut m, 1.0).unwrap(), "textual inversion: <toy>");
        // The learned rows are what the encoder now reads for the placeholder.
        let after = context(&m, "a photo of <toy>");
        assert!(diff(&before, &after) > 1e-3);
        assert_eq!(diff(&context(&m, "a photo of"), &context(&model(), "a photo of")), 0.0);
    }
    let mut m = model();
    let wrong = dir.join("wrong.safetensors");
    save_embeddings(
        &wrong,
        &[("<w>".to_string(), Tensor::zeros((1, d + 1), candle_core::DType::F32, &Device::Cpu).unwrap())],
        EmbeddingFormat::Diffusers,
    )
    .unwrap();
    let e = load_adapter(&wrong, &mut m, 1.0).unwrap_err().to_string();
    assert!(e.contains("wrong.safetensors") && e.contains(&format!("(n, {d})")), "{e}");
}

#[test]
fn dense_and_spectral_files_rebuild_the_trained_weights() {
    let dir = tmp("dense");
    let m = model();
    let (layer, _, _) = m.unet.slots.names().into_iter().find(|(n, _, _)| n.ends_with("attn2.to_k")).unwrap();
    let w0 = m.unet.slots.weight(&layer).unwrap();
    let w1 = (&w0 + 0.25).unwrap();
    for fmt in [DenseFormat::DreamBooth, DenseFormat::CustomDiffusion] {
        let path = dir.join(format!("{fmt:?}.safetensors"));
        save_dense(&path, &[(layer.clone(), w1.clone())], fmt).unwrap();
        let keys: Vec<String> = candle_core::safetensors::load(&path, &Device::Cpu).unwrap().into_keys().collect();
        if fmt == DenseFormat::CustomDiffusion {
            assert_eq!(
                keys,
                vec![format!("{}.processor.to_k_custom_diffusion.weight", layer.trim_end_matches(".to_k"))]
            );
        }
        let mut m = model();
        assert_eq!(load_adapter(&path, &mut m, 1.0).unwrap(), "dense weights, 1 layers");
    }
    // SVDiff: a zero shift file changes nothing; a wrong-length shift names the layer.
    let k = w0.dims2().map(|(o, i)| o.min(i)).unwrap();
    let zero = dir.join("spectral_shifts.safetensors");
    save_shifts(&zero, &[(layer.clone(), Tensor::zeros(k, candle_core::DType::F32, &Device::Cpu).unwrap())]).unwrap();
    let mut m = model();
    assert_eq!(load_adapter(&zero, &mut m, 1.0).unwrap(), "SVDiff spectral shifts, 1 layers");
    let bad = dir.join("bad_shifts.safetensors");
    save_shifts(&bad, &[(layer.clone(), Tensor::zeros(k + 1, candle_core::DType::F32, &Device::Cpu).unwrap())])
        .unwrap();
    let e = load_adapter(&bad, &mut model(), 1.0).unwrap_err().to_string();
    assert!(e.contains("bad_shifts.safetensors") && e.contains("another base model"), "{e}");
    // A dense file for another model's layer.
    let other = dir.join("other.safetensors");
    save_dense(&other, &[("mid_block.nothing.to_q".into(), w1)], DenseFormat::DreamBooth).unwrap();
    let e = load_adapter(&other, &mut model(), 1.0).unwrap_err().to_string();
    assert!(e.contains("names no adapted layer"), "{e}");
    std::fs::write(dir.join("junk.safetensors"), b"junk").unwrap();
    let e = load_adapter(&dir.join("junk.safetensors"), &mut model(), 1.0).unwrap_err().to_string();
    assert!(e.contains("junk.safetensors") && e.contains("not a readable"), "{e}");
}

/// Dense files hold conv kernels (4-D) and norm gains (1-D) in their own shapes, as a
/// diffusers state dict does: W0 itself changes nothing, W0 + 0.25 changes the output, and a
/// kernel flattened to the 2-D view is refused with its shapes.
#[test]
fn dense_files_hold_convs_and_norms_in_their_own_shapes() {
    let dir = tmp("dense-conv");
    let find =
        |m: &Model, suffix: &str| m.unet.slots.names().into_iter().find(|(n, _, _)| n.ends_with(suffix)).unwrap().0;
    let m = model();
    let (conv, norm) = (find(&m, "resnets.0.conv1"), find(&m, "resnets.0.norm1"));
    let own = |m: &Model, l: &str, add: f64| {
        let s = &m.unet.slots;
        (s.weight(l).unwrap() + add).unwrap().reshape(s.shape(l).unwrap()).unwrap()
    };
    let eps = |m: &Model| {
        let x = Tensor::ones((1, 4, 16, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[500f32], &Device::Cpu).unwrap();
        m.unet.forward(&x, &t, &context(m, "a photo"), None, &mut vstar_nn::Ctx::default()).unwrap()
    };
    let base = eps(&m);
    for add in [0.0, 0.25] {
        let path = dir.join(format!("db{add}.safetensors"));
        let layers = [(conv.clone(), own(&m, &conv, add)), (norm.clone(), own(&m, &norm, add))];
        save_dense(&path, &layers, DenseFormat::DreamBooth).unwrap();
        let file = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(file[&format!("{conv}.weight")].rank(), 4);
        assert_eq!(file[&format!("{norm}.weight")].rank(), 1);
        let mut m = model();
        assert_eq!(load_adapter(&path, &mut m, 1.0).unwrap(), "dense weights, 2 layers");
        let d = diff(&eps(&m), &base);
        assert!(if add == 0.0 { d < 1e-5 } else { d > 1e-3 }, "W0 + {add}: output moved {d}");
    }
    let flat = dir.join("flat.safetensors");
    save_dense(&flat, &[(conv.clone(), m.unet.slots.weight(&conv).unwrap())], DenseFormat::DreamBooth).unwrap();
    let e = load_adapter(&flat, &mut model(), 1.0).unwrap_err().to_string();
    assert!(e.contains("flat.safetensors") && e.contains(&conv) && e.contains("another base model"), "{e}");
}

/// A kohya LoCon-style LoRA on a conv (down (r, c, 3, 3), up (out, r, 1, 1)) is the kernel
/// delta up @ down * alpha/r: it renders what a dense file of W0 + that delta renders.
#[test]
fn conv_lora_equals_its_dense_kernel_delta() {
    let dir = tmp("conv-lora");
    let m = model();
    let conv = m.unet.slots.names().into_iter().find(|(n, _, _)| n.ends_with("resnets.0.conv1")).unwrap().0;
    let shape = m.unet.slots.shape(&conv).unwrap();
    let (o, c) = (shape[0], shape[1]);
    let down = Tensor::randn(0f32, 0.3, (2, c, 3, 3), &Device::Cpu).unwrap();
    let up = Tensor::randn(0f32, 0.3, (o, 2, 1, 1), &Device::Cpu).unwrap();
    let k = format!("lora_unet_{}", conv.replace('.', "_"));
    let lora = dir.join("locon.safetensors");
    let tensors = [
        (format!("{k}.lora_down.weight"), down.clone()),
        (format!("{k}.lora_up.weight"), up.clone()),
        (format!("{k}.alpha"), Tensor::new(1f32, &Device::Cpu).unwrap()),
    ];
    candle_core::safetensors::save(&tensors.into_iter().collect(), &lora).unwrap();
    let dw = (up.flatten_from(1).unwrap().matmul(&down.flatten_from(1).unwrap()).unwrap() * 0.5).unwrap();
    let full = (m.unet.slots.weight(&conv).unwrap() + dw).unwrap().reshape(shape).unwrap();
    let dense = dir.join("dense.safetensors");
    save_dense(&dense, &[(conv.clone(), full)], DenseFormat::DreamBooth).unwrap();
    let eps = |file: Option<&PathBuf>| {
        let mut m = model();
        if let Some(f) = file {
            load_adapter(f, &mut m, 1.0).unwrap();
        }
        let x = Tensor::ones((1, 4, 16, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[500f32], &Device::Cpu).unwrap();
        m.unet.forward(&x, &t, &context(&m, "a photo"), None, &mut vstar_nn::Ctx::default()).unwrap()
    };
    let (a, b) = (eps(Some(&lora)), eps(Some(&dense)));
    assert!(diff(&a, &eps(None)) > 1e-3, "the LoRA moves the output");
    assert!(diff(&a, &b) < 1e-4, "LoCon vs dense: {}", diff(&a, &b));
}
