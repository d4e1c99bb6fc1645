//! `strand broker`. PLACEHOLDER: written with the server.
use crate::cli::BrokerArgs;
pub fn run(_args: BrokerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
