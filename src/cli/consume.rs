//! `strand consume`. PLACEHOLDER: implemented with the client CLI work.

use crate::cli::ConsumeArgs;

pub fn run(_args: ConsumeArgs) -> anyhow::Result<()> {
    anyhow::bail!("'strand consume' is not implemented yet")
}
