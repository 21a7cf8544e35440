//! vstar-nn: the Stable-Diffusion-family models (UNet, VAE, CLIP text), their configs and
//! weight loading, the tokenizer, and the two extension points every personalization method
//! uses: `AdaptedLinear` (per-row adapter scale) and `AttentionHooks`.

pub mod adapters;
pub mod alloc;
pub mod config;
pub mod flops;
pub mod layers;
pub mod locate;
pub mod model;
pub mod models;
pub mod threads;
pub mod tokenizer;
pub mod weights;

pub use layers::attention::Ctx;
