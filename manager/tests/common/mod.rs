#![allow(dead_code)]

pub mod kv_conformance;
pub mod plugins;
