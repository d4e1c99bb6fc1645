//! `strand broker`: load config (defaults < --config file < flags), run until SIGTERM/ctrl-c,
//! then shut down cleanly (stop accepting, finish in-flight requests, sync, exit 0).

use anyhow::Context;

use crate::cli::BrokerArgs;
use crate::config::BrokerConfig;
use crate::runtime::Runtime;

/// Merge the config file and the flags over the defaults.
pub fn load_config(args: &BrokerArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            BrokerConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?
        }
        None => BrokerConfig::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = &args.advertised_listener {
        config.advertised_listener = Some(v.clone());
    }
    if let Some(v) = &args.data_dir {
        config.data_dir = v.clone();
    }
    if let Some(v) = args.node_id {
        config.node_id = v;
    }
    if let Some(v) = &args.controller_quorum {
        config.controller_quorum = Some(v.clone());
    }
    if let Some(v) = &args.cluster_id {
        config.cluster_id = Some(v.clone());
    }
    if let Some(v) = &args.rack {
        config.broker_rack = Some(v.clone());
    }
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(async move {
        let handle = crate::server::start(Runtime::real(), config).await?;
        eprintln!("strand: broker listening on {}", handle.local_addr());
        wait_for_signal().await?;
        tracing::info!("shutting down");
        handle.shutdown().await
    })
}

#[cfg(not(madsim))]
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        biased;
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
    }
    Ok(())
}

#[cfg(madsim)]
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")
}
