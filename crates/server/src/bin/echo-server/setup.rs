//! What both serving and the admin commands need first: the settings, the
//! store they name, and a small runtime for one job.

use std::io;

use anyhow::Context;
use echo_server::{
    ServerConfig,
    config::{FileConfig, RunArgs},
    store::{self, Store, StoreError},
};

/// The settings from the flags, the config file they name and `ask_port`.
pub(crate) fn load_config(
    args: &RunArgs,
    ask_port: impl FnOnce(u16) -> io::Result<Option<u16>>,
) -> anyhow::Result<ServerConfig> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    Ok(ServerConfig::resolve(args, file, ask_port)?)
}

/// Opens the store the configuration names.
pub(crate) async fn open_store(config: &ServerConfig) -> Result<Store, StoreError> {
    store::open(&config.store_location(), config.lifetimes()).await
}

/// A runtime for one job before (or instead of) serving: opening the store,
/// an admin command.
pub(crate) fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// An error and its causes in one sentence, each cause once: errors that
/// already show their source in their own text are not followed by it again.
pub(crate) fn describe(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
