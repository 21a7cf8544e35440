//! Guidance methods: each declares the UNet rows it needs at a step and how it combines their
//! predictions. The sampler batches the rows of a step into one UNet call and counts them.

mod autoguidance;
pub mod build;
mod cfg;
mod cfgpp;
mod masked;
mod mixed;
mod pg;
mod photoswap;
mod profusion;
mod subject_agnostic;

pub use autoguidance::Autoguidance;
pub use cfg::{cfg_combine, Cfg};
pub use cfgpp::CfgPlusPlus;
pub use masked::{MaskSource, Masked};
pub use mixed::{Mixed, MultiStage, Superclass, Switching};
pub use pg::PersonalizationGuidance;
pub use photoswap::Photoswap;
pub use profusion::ProFusion;
pub use subject_agnostic::SubjectAgnostic;

use candle_core::{Result, Tensor};
use vstar_nn::layers::AttentionHooks;

/// Which prompt a row is conditioned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PromptKind {
    /// The empty (or negative) prompt.
    Null,
    /// The user's prompt, with the placeholder token if any.
    Concept,
    /// The prompt with the placeholder removed (the class word stays).
    Superclass,
}

/// One row of a batched UNet call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Branch {
    pub prompt: PromptKind,
    /// Adapter strength for this row: 1 fine-tuned, 0 pretrained, w interpolated.
    pub adapter_scale: f32,
}

impl Branch {
    pub fn new(prompt: PromptKind, adapter_scale: f32) -> Self {
        Self { prompt, adapter_scale }
    }
}

/// The common rows: unconditional, superclass and concept prompts at full adapter strength.
pub(crate) const NULL: Branch = Branch { prompt: PromptKind::Null, adapter_scale: 1.0 };
pub(crate) const SUPER: Branch = Branch { prompt: PromptKind::Superclass, adapter_scale: 1.0 };
pub(crate) const CONCEPT: Branch = Branch { prompt: PromptKind::Concept, adapter_scale: 1.0 };

pub trait Guidance {
    fn name(&self) -> &'static str;
    /// Rows needed at `step` (0-based, largest t first) of `steps`.
    fn branches(&self, step: usize, steps: usize) -> Vec<Branch>;
    /// The guided prediction from one prediction per branch (same order as `branches`).
    fn combine(&self, step: usize, steps: usize, eps: &[Tensor]) -> Result<Tensor>;
    /// Attention hooks for the UNet call at `step`, whose batch holds `n` rows per branch
    /// (None, the default, costs nothing).
    fn hooks(&self, _step: usize, _steps: usize, _n: usize) -> Option<AttentionHooks> {
        None
    }
    /// `combine` with what the hooks recorded during the call (methods that read attention).
    fn combine_hooked(
        &self,
        step: usize,
        steps: usize,
        eps: &[Tensor],
        _hooks: Option<&AttentionHooks>,
    ) -> Result<Tensor> {
        self.combine(step, steps, eps)
    }
    /// Refinement passes before the step's prediction (ProFusion; default none).
    fn refines(&self, _step: usize, _steps: usize) -> usize {
        0
    }
    /// The rows of a refinement pass.
    fn refine_branches(&self) -> Vec<Branch> {
        vec![]
    }
    /// The refined latents from a pass's predictions and fresh standard-normal `noise`.
    fn refine(&self, _step: usize, z: &Tensor, _eps: &[Tensor], _noise: &Tensor) -> Result<Tensor> {
        Ok(z.clone())
    }
    /// Masks the method computed, by step (masked sampling; `--save-masks`).
    fn saved_masks(&self) -> Vec<(usize, Tensor)> {
        vec![]
    }
    /// Parameters for the JSON sidecar.
    fn params(&self) -> serde_json::Value;
}
