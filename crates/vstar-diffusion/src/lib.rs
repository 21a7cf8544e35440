//! vstar-diffusion: schedulers, guidance methods, the sampler and pipelines.

pub mod alchemy;
pub mod blur;
pub mod colour_mask;
pub mod guidance;
pub mod images;
pub mod noise;
pub mod pipeline;
pub mod sampler;
pub mod scheduler;
