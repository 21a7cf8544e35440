//! Weight sources for model construction.
//!
//! Every model is built through a candle `VarBuilder`, so one constructor serves three cases:
//! loading safetensors (SD folders, Toyland), fresh trainable weights (`VarBuilder::from_varmap`,
//! Toyland pretraining) and name/shape checking without allocation ([`MetaBackend`]).
//! Both backends here record which tensors were requested so a loader can report file entries
//! the model never used.

use candle_core::{safetensors::MmapedSafetensors, DType, Device, Error, Result, Shape, Tensor};
use candle_nn::{var_builder::SimpleBackend, Init, VarBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Tensors the file may hold that no model reads (buffers older exporters saved).
const IGNORED_SUFFIXES: &[&str] = &["position_ids"];

/// Safetensors files of one component, memory-mapped; shapes checked against the model.
pub struct SafetensorsBackend {
    files: Vec<PathBuf>,
    st: MmapedSafetensors,
    used: Mutex<BTreeSet<String>>,
}

impl SafetensorsBackend {
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        for f in files {
            let meta = std::fs::metadata(f).map_err(|e| Error::Msg(format!("{}: cannot read ({e})", f.display())))?;
            if meta.len() < 8 {
                return Err(Error::Msg(format!(
                    "{}: truncated safetensors file ({} bytes); re-download or re-export it",
                    f.display(),
                    meta.len()
                )));
            }
        }
        // Open each file once alone first so a corrupt one is named in the error.
        for f in files {
            unsafe { MmapedSafetensors::new(f) }.map_err(|e| {
                Error::Msg(format!(
                    "{}: not a valid safetensors file ({e}); it may be truncated or corrupt",
                    f.display()
                ))
            })?;
        }
        let st = unsafe { MmapedSafetensors::multi(files) }?;
        Ok(Self { files: files.to_vec(), st, used: Mutex::new(BTreeSet::new()) })
    }

    fn describe(&self) -> String {
        self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Names in the files the model never asked for (ignorable buffers excluded).
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().unwrap();
        let mut out: Vec<String> = self
            .st
            .tensors()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !used.contains(n) && !IGNORED_SUFFIXES.iter().any(|s| n.ends_with(s)))
            .collect();
        out.sort();
        out
    }
}

fn convertible(dtype: safetensors::Dtype) -> bool {
    use safetensors::Dtype as D;
    matches!(dtype, D::F32 | D::F16 | D::BF16 | D::F64)
}

impl SimpleBackend for SafetensorsBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let view = self.st.get(name).map_err(|_| {
            Error::Msg(format!("{}: tensor `{name}` is missing (expected shape {s:?})", self.describe()))
        })?;
        if view.shape() != s.dims() {
            return Err(Error::Msg(format!(
                "{}: tensor `{name}` has shape {:?}, the config expects {:?}",
                self.describe(),
                view.shape(),
                s.dims()
            )));
        }
        if !convertible(view.dtype()) {
            return Err(Error::Msg(format!(
                "{}: tensor `{name}` has unsupported dtype {:?}; vstar reads f32, f16 and bf16",
                self.describe(),
                view.dtype()
            )));
        }
        self.used.lock().unwrap().insert(name.to_string());
        self.st.load(name, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.used.lock().unwrap().insert(name.to_string());
        self.st.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }
}

/// Name/shape list of a checkpoint, without its data: builds a model allocating nothing
/// (every tensor is a broadcast view of one shared scalar).
pub struct MetaBackend {
    shapes: BTreeMap<String, Vec<usize>>,
    zero: Tensor,
    used: Mutex<BTreeSet<String>>,
}

impl MetaBackend {
    pub fn new(shapes: BTreeMap<String, Vec<usize>>) -> Result<Self> {
        let zero = Tensor::zeros((), DType::F32, &Device::Cpu)?;
        Ok(Self { shapes, zero, used: Mutex::new(BTreeSet::new()) })
    }

    /// Reads `name<TAB>d0,d1,...` lines (the params.txt lists in tests/fixtures/real-configs).
    pub fn from_list(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Msg(format!("{}: cannot read ({e})", path.display())))?;
        let mut shapes = BTreeMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let (name, dims) = line
                .split_once('\t')
                .ok_or_else(|| Error::Msg(format!("{}:{}: expected `name<TAB>shape`", path.display(), i + 1)))?;
            let dims = dims
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Msg(format!("{}:{}: bad shape ({e})", path.display(), i + 1)))?;
            shapes.insert(name.to_string(), dims);
        }
        Self::new(shapes)
    }

    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().unwrap();
        self.shapes
            .keys()
            .filter(|n| !used.contains(*n) && !IGNORED_SUFFIXES.iter().any(|s| n.ends_with(s)))
            .cloned()
            .collect()
    }
}

impl SimpleBackend for MetaBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, _: &Device) -> Result<Tensor> {
        let found = self
            .shapes
            .get(name)
            .ok_or_else(|| Error::Msg(format!("tensor `{name}` is missing (expected shape {s:?})")))?;
        if found.as_slice() != s.dims() {
            return Err(Error::Msg(format!("tensor `{name}` has shape {found:?}, the config expects {:?}", s.dims())));
        }
        self.used.lock().unwrap().insert(name.to_string());
        self.zero.to_dtype(dtype)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _: &Device) -> Result<Tensor> {
        let dims = self.shapes.get(name).ok_or_else(|| Error::Msg(format!("tensor `{name}` is missing")))?;
        self.used.lock().unwrap().insert(name.to_string());
        self.zero.to_dtype(dtype)?.broadcast_as(dims.as_slice())
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
}

/// The safetensors weight files of a component folder (`unet/`, `vae/`, ...): a single file, or
/// the shards listed by an `*.index.json`. Prefers diffusers' names over other safetensors.
pub fn component_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::Msg(format!(
            "{}: component folder is missing; a diffusers-layout model needs it",
            dir.display()
        )));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Msg(format!("{}: cannot list ({e})", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    if let Some(index) = entries.iter().find(|p| p.to_string_lossy().ends_with(".safetensors.index.json")) {
        return shards_from_index(index);
    }
    let st: Vec<PathBuf> = entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect();
    // A folder may carry both full and fp16 variants; take the plain one if present.
    let plain: Vec<PathBuf> = st
        .iter()
        .filter(|p| !p.to_string_lossy().contains(".fp16.") && !p.to_string_lossy().contains(".bf16."))
        .cloned()
        .collect();
    let chosen = if plain.is_empty() { st } else { plain };
    match chosen.len() {
        0 => Err(Error::Msg(format!(
            "{}: no .safetensors weights found (vstar never loads pickled .bin/.ckpt files; convert them to safetensors)",
            dir.display()
        ))),
        1 => Ok(chosen),
        _ => Err(Error::Msg(format!(
            "{}: several .safetensors files and no index.json: keep one, or add the index",
            dir.display()
        ))),
    }
}

fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string(index).map_err(|e| Error::Msg(format!("{}: cannot read ({e})", index.display())))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Msg(format!("{}: invalid JSON ({e})", index.display())))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Msg(format!("{}: no `weight_map` object", index.display())))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let files: BTreeSet<PathBuf> = map.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect();
    Ok(files.into_iter().collect())
}

/// A handle on loaded weights that can list what the model left unused.
pub enum Source {
    Safetensors(std::sync::Arc<SafetensorsBackend>),
    Meta(std::sync::Arc<MetaBackend>),
}

impl Source {
    pub fn unused(&self) -> Vec<String> {
        match self {
            Source::Safetensors(b) => b.unused(),
            Source::Meta(b) => b.unused(),
        }
    }
}

struct Shared<B: SimpleBackend>(std::sync::Arc<B>);

impl<B: SimpleBackend> SimpleBackend for Shared<B> {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

/// A `VarBuilder` over a component folder's safetensors, plus the handle for unused-key checks.
pub fn load_component(dir: &Path, dtype: DType, dev: &Device) -> Result<(VarBuilder<'static>, Source)> {
    let backend = std::sync::Arc::new(SafetensorsBackend::open(&component_files(dir)?)?);
    let vb = VarBuilder::from_backend(Box::new(Shared(backend.clone())), dtype, dev.clone());
    Ok((vb, Source::Safetensors(backend)))
}

/// A `VarBuilder` over a name/shape list: builds the model allocating nothing.
pub fn meta_component(list: &Path) -> Result<(VarBuilder<'static>, Source)> {
    let backend = std::sync::Arc::new(MetaBackend::from_list(list)?);
    let vb = VarBuilder::from_backend(Box::new(Shared(backend.clone())), DType::F32, Device::Cpu);
    Ok((vb, Source::Meta(backend)))
}
