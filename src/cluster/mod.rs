//! Cluster metadata: the image every shard reads, and topic configs.

pub mod image;
pub mod topic_config;
