//! `strand consume TOPIC`: print record values (optionally `KEY<sep>VALUE`), one per line.
//! Starts at the latest offset, or the earliest with `--from-beginning`, or `--offset N`; stops
//! after `--max` records or `--idle-timeout-ms` without a record.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail};
use kafka_protocol::messages::FetchRequest;

use crate::cli::ConsumeArgs;
use crate::client::records::decode_fetched;
use crate::client::{error_name, Client};
use crate::runtime::Runtime;

/// Bytes asked for per partition per fetch (Kafka's `max.partition.fetch.bytes` default).
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(async move {
        let mut client = Client::connect(&args.connect.bootstrap_server).await?;
        let partitions = crate::cli::topic::partition_count(&mut client, &args.topic, false).await?;
        let chosen: Vec<i32> = match args.partition {
            Some(p) if p < 0 || p >= partitions => bail!("--partition {p}: topic '{}' has partitions 0..{}", args.topic, partitions - 1),
            Some(p) => vec![p],
            None => (0..partitions).collect(),
        };
        let bounds = crate::cli::topic::offsets(&mut client, &args.topic, partitions).await?;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for p in &chosen {
            let (earliest, latest) = bounds[*p as usize];
            let start = match args.offset {
                Some(o) if o < earliest || o > latest => bail!("--offset {o}: partition {p} holds offsets {earliest}..{latest}"),
                Some(o) => o,
                None if args.from_beginning => earliest,
                None => latest,
            };
            next.insert(*p, start);
        }
        let clock = Runtime::real().clock;
        let idle = args.idle_timeout_ms.map(Duration::from_millis);
        let mut last_record = clock.monotonic();
        let mut printed = 0u64;
        let stdout = std::io::stdout();
        let version = client.version_for::<FetchRequest>(12)?;
        loop {
            let request = crate::client::fetch_request(&args.topic, next.iter().map(|(p, o)| (*p, *o)), 500, 8 * 1024 * 1024, PARTITION_MAX_BYTES);
            let response = client.send_at(&request, version).await?;
            if response.error_code != 0 {
                bail!("fetch: {}", error_name(response.error_code));
            }
            let mut out = stdout.lock();
            for t in &response.responses {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        bail!("{}-{}: fetch: {}", args.topic, p.partition_index, error_name(p.error_code));
                    }
                    let Some(records) = p.records.as_ref() else { continue };
                    let position = next.get_mut(&p.partition_index).ok_or_else(|| anyhow!("fetch answered for unrequested partition {}", p.partition_index))?;
                    let fetched = decode_fetched(records, *position).map_err(|e| anyhow!("{}-{}: {e}", args.topic, p.partition_index))?;
                    if fetched.next_offset == *position && fetched.partial_tail_bytes > 0 {
                        // A batch larger than partition_max_bytes came back cut short; asking
                        // again with the same limit would return the same bytes forever.
                        bail!("{}-{}: batch at offset {} is larger than the {PARTITION_MAX_BYTES} bytes fetched", args.topic, p.partition_index, *position);
                    }
                    *position = fetched.next_offset;
                    for r in fetched.records {
                        let value = r.value.as_deref().unwrap_or_default();
                        match (&args.key_separator, &r.key) {
                            (Some(sep), Some(k)) => {
                                out.write_all(k)?;
                                out.write_all(sep.as_bytes())?;
                            }
                            (Some(sep), None) => out.write_all(sep.as_bytes())?,
                            _ => {}
                        }
                        out.write_all(value)?;
                        out.write_all(b"\n")?;
                        printed += 1;
                        last_record = clock.monotonic();
                        if args.max.is_some_and(|m| printed >= m) {
                            out.flush()?;
                            return Ok(());
                        }
                    }
                }
            }
            out.flush()?;
            if idle.is_some_and(|d| clock.monotonic() - last_record >= d) {
                return Ok(());
            }
        }
    })
}
