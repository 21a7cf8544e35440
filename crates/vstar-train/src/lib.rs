//! vstar-train: what every training loop shares - AdamW with gradient clipping and a
//! learning-rate schedule, EMA weights, and atomic, resumable checkpoints.

pub mod checkpoint;
pub mod denoise;
pub mod ema;
pub mod init;
pub mod optim;
pub mod palp;
pub mod params;
pub mod personalize;
pub mod prior;
pub mod run;
pub mod step_grads;
pub mod subject;
