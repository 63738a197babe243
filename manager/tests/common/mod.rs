#![allow(dead_code)]

pub mod daemon;
pub mod kv_conformance;
pub mod plugins;
pub mod private_redis;
