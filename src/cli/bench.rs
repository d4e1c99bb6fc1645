//! `strand bench`. PLACEHOLDER: implemented with the client CLI work.

use crate::cli::BenchArgs;

pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("'strand bench' is not implemented yet")
}
