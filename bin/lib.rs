//! The `ringstream` command's library: the configuration loader, which turns a TOML file into
//! the engine's checked `ServerConfig` or an error naming the file, line and key. The command
//! (`main.rs`) and the fuzzer (`fuzz/`, target `config_loader`) use it.

pub mod config;
