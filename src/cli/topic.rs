//! `strand topic`. PLACEHOLDER: implemented with the client CLI work.

use crate::cli::TopicArgs;

pub fn run(_args: TopicArgs) -> anyhow::Result<()> {
    anyhow::bail!("'strand topic' is not implemented yet")
}
