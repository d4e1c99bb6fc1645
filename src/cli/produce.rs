//! `strand produce`. PLACEHOLDER: implemented with the client CLI work.

use crate::cli::ProduceArgs;

pub fn run(_args: ProduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("'strand produce' is not implemented yet")
}
