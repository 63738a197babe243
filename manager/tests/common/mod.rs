#![allow(dead_code)]

pub mod bounded;
pub mod daemon;
pub mod hostile;
pub mod kv_conformance;
pub mod plugins;
pub mod private_redis;
pub mod supervision;
pub mod worker;
pub mod wrapped_db;
