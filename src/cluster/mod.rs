//! Cluster metadata: the records every change is made of, the image they build, the log that
//! persists them, and topic configs.

pub mod features;
pub mod frames;
pub mod image;
pub mod record;
pub mod store;
pub mod topic_config;
