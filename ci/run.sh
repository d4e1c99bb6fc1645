#!/usr/bin/env bash
# THE test command (README.md: "ci/run.sh"). CI runs it through .ci/run on a clean clone.
#   1. install test tools (kcat, kafka-python)
#   2. every unit, property and integration test: cargo test --workspace
#   3. build the broker under the simulator (--cfg madsim, its own target dir) and run a
#      bounded sweep, the regression seeds, the determinism check and the planted bugs
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strand/target}"
SIM_TARGET_DIR="${STRAND_SIM_TARGET_DIR:-$HOME/.cache/strand/target-sim}"
export CARGO_TERM_COLOR=never
started=$(date +%s)

echo "== setup"
ci/setup.sh

echo "== cargo test --workspace (target dir $CARGO_TARGET_DIR)"
cargo test --workspace --locked 2>&1 | tee /tmp/strand-ci-test.log
grep -q "test result:" /tmp/strand-ci-test.log || { echo "ci/run.sh: no tests ran"; exit 1; }

echo "== planted bugs: the log property test must catch each one it can see"
for bug in torn-tail-off-by-one skip-recovery-crc; do
  if STRAND_PLANTED_BUGS=$bug cargo test -p strand-proptests --features planted-bugs --locked >/tmp/strand-ci-planted.log 2>&1; then
    echo "ci/run.sh: planted bug '$bug' was NOT caught by proptests/tests/log_model.rs"; exit 1
  fi
  grep -q "minimal failing input" /tmp/strand-ci-planted.log || { echo "ci/run.sh: planted bug '$bug' run failed without a proptest failure:"; tail -20 /tmp/strand-ci-planted.log; exit 1; }
  echo "planted bug '$bug': caught"
done

echo "== simulator (RUSTFLAGS=--cfg madsim, target dir $SIM_TARGET_DIR): build, sweep, regressions, determinism, planted bugs"
STRAND_SIM_TARGET_DIR="$SIM_TARGET_DIR" sim/run ci

echo "== ci/run.sh passed in $(( $(date +%s) - started )) s"
