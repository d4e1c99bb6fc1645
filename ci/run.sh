#!/usr/bin/env bash
# THE test command (README.md: "ci/run.sh"). CI runs it through .ci/run on a clean clone.
#   1. install test tools (kcat, kafka-python): ci/setup.sh
#   2. every unit, property and integration test: cargo test --workspace (the integration tests
#      in tests/ run the real `strand broker` binary against rdkafka, kafka-python and kcat)
#   3. the log property test must catch the planted bugs it can see, and the Raft harness
#      (random schedules and scenarios) every planted Raft bug
#   4. the library under the simulator: RUSTFLAGS="--cfg madsim" cargo build --workspace --lib
#      (its own target dir)
#   5. the madsim tests of the sim crate (the inter-broker transport under clogs, kills and
#      restarts: sim/tests/transport.rs), twice per seed to check determinism; the metadata
#      quorum's Raft shell on 3 nodes under kills and clogs (sim/tests/quorum.rs), with a
#      planted Raft bug it must catch
#   6. the simulator (sim/run ci: bounded sweep, regression seeds, determinism, planted bugs),
#      when sim/run exists and is executable
# Target dirs persist between runs: CARGO_TARGET_DIR (default ~/.cache/strand/target) and
# STRAND_SIM_TARGET_DIR (default ~/.cache/strand/target-sim).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strand/target}"
SIM_TARGET_DIR="${STRAND_SIM_TARGET_DIR:-$HOME/.cache/strand/target-sim}"
export CARGO_TERM_COLOR=never
started=$(date +%s)
logs=$(mktemp -d "${TMPDIR:-/tmp}/strand-ci.XXXXXX")
summary=()

step() { # step NAME: print a header and remember when it started
  step_name=$1; step_started=$(date +%s)
  echo; echo "== $1"
}
done_step() { summary+=("$(printf '%-60s %4d s  %s' "$step_name" $(( $(date +%s) - step_started )) "${1:-ok}")"); }
print_summary() {
  echo; echo "== summary (logs in $logs)"
  printf '  %s\n' "${summary[@]}"
}
trap 'status=$?; if [ $status -ne 0 ]; then summary+=("$(printf "%-60s FAILED (exit %d)" "${step_name:-?}" $status)"); print_summary; fi' EXIT

step "setup (kcat, kafka-python)"
ci/setup.sh
done_step

step "cargo test --workspace"
echo "target dir $CARGO_TARGET_DIR"
cargo test --workspace --locked 2>&1 | tee "$logs/test.log"
passed=$(grep -o '[0-9]* passed' "$logs/test.log" | awk '{s+=$1} END {print s+0}')
suites=$(grep -c '^test result:' "$logs/test.log" || true)
[ "$suites" -gt 0 ] || { echo "ci/run.sh: no tests ran"; exit 1; }
done_step "$passed tests passed in $suites suites"

step "planted bugs vs proptests/tests/log_model.rs"
for bug in torn-tail-off-by-one skip-recovery-crc replica-stale-sync-counts; do
  if STRAND_PLANTED_BUGS=$bug cargo test -p strand-proptests --features planted-bugs --locked --test log_model >"$logs/planted-$bug.log" 2>&1; then
    echo "ci/run.sh: planted bug '$bug' was NOT caught by proptests/tests/log_model.rs"; exit 1
  fi
  grep -q "minimal failing input" "$logs/planted-$bug.log" || { echo "ci/run.sh: planted bug '$bug' run failed without a proptest failure:"; tail -20 "$logs/planted-$bug.log"; exit 1; }
  echo "planted bug '$bug': caught"
done
done_step

step "planted bugs vs the Raft harness (proptests/tests/raft_safety.rs, raft_scenarios.rs)"
# Each planted Raft bug must make the random schedules or a scenario fail. RAFT_NO_HS_CHECK
# turns off the harness's direct check of the hard-state contract, so a vote that was not made
# durable has to be caught by its consequence (two leaders in one term, a second vote).
for bug in raft-vote-without-persist raft-commit-previous-term raft-accept-stale-append raft-keep-conflicting-suffix raft-vote-for-stale-log raft-read-without-quorum raft-batch-counted-as-one raft-commit-on-one-ack; do
  if RAFT_NO_HS_CHECK=1 RAFT_SCHEDULES=3000 STRAND_PLANTED_BUGS=$bug cargo test -p strand-proptests --features planted-bugs --locked \
       --test raft_safety --test raft_scenarios --no-fail-fast >"$logs/planted-$bug.log" 2>&1; then
    echo "ci/run.sh: planted bug '$bug' was NOT caught by the Raft harness"; exit 1
  fi
  caught=$(grep -o '^test [a-z0-9_]* \.\.\. FAILED' "$logs/planted-$bug.log" | awk '{print $2}' | paste -sd, -)
  [ -n "$caught" ] || { echo "ci/run.sh: planted bug '$bug' run failed without a failing test:"; tail -20 "$logs/planted-$bug.log"; exit 1; }
  echo "planted bug '$bug': caught by $caught"
done
done_step

step "simulator build: --cfg madsim, cargo build --workspace --lib"
echo "target dir $SIM_TARGET_DIR"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" cargo build --workspace --lib --locked
done_step

step "madsim tests: cargo test -p strand-sim --test transport (--cfg madsim)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=4 MADSIM_TEST_CHECK_DETERMINISM=1 \
  cargo test -p strand-sim --test transport --locked 2>&1 | tee "$logs/sim-tests.log"
done_step

step "madsim: the metadata quorum's Raft shell on 3 nodes (sim/tests/quorum.rs)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=8 \
  cargo test -p strand-sim --test quorum --locked 2>&1 | tee "$logs/sim-quorum.log"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=2 MADSIM_TEST_CHECK_DETERMINISM=1 \
  cargo test -p strand-sim --test quorum --locked >>"$logs/sim-quorum.log" 2>&1
# The planted bug it must see: a follower keeping a conflicting suffix and acknowledging it.
if STRAND_PLANTED_BUGS=raft-keep-conflicting-suffix RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=8 \
     cargo test -p strand-sim --test quorum --locked >"$logs/sim-quorum-planted.log" 2>&1; then
  echo "ci/run.sh: planted bug 'raft-keep-conflicting-suffix' was NOT caught by sim/tests/quorum.rs"; exit 1
fi
grep -q "violations\|panicked" "$logs/sim-quorum-planted.log" || { echo "ci/run.sh: the planted quorum run failed without a violation:"; tail -20 "$logs/sim-quorum-planted.log"; exit 1; }
echo "planted bug 'raft-keep-conflicting-suffix': caught by sim/tests/quorum.rs"
# And a leader answering a follower's forwarded proposal before it commits.
if STRAND_PLANTED_BUGS=raft-forward-ack-before-commit RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=8 \
     cargo test -p strand-sim --test quorum --locked >"$logs/sim-quorum-planted-forward.log" 2>&1; then
  echo "ci/run.sh: planted bug 'raft-forward-ack-before-commit' was NOT caught by sim/tests/quorum.rs"; exit 1
fi
grep -q "violations\|panicked" "$logs/sim-quorum-planted-forward.log" || { echo "ci/run.sh: the planted forward run failed without a violation:"; tail -20 "$logs/sim-quorum-planted-forward.log"; exit 1; }
echo "planted bug 'raft-forward-ack-before-commit': caught by sim/tests/quorum.rs"
done_step

step "madsim: three replicas of a partition log under power loss (sim/tests/replicas.rs, replica_driver.rs)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=64 \
  cargo test -p strand-sim --test replicas --locked -- --nocapture 2>&1 | tee "$logs/sim-replicas.log"
# Coverage: the sweep must have cut divergent suffixes (a replica truncating to its leader).
cuts=$(grep -o '[0-9]* truncations,' "$logs/sim-replicas.log" | awk '{s += $1} END {print s + 0}')
[ "$cuts" -gt 0 ] || { echo "ci/run.sh: sim/tests/replicas.rs cut no divergent suffix in its whole sweep"; exit 1; }
echo "sim/tests/replicas.rs: $cuts divergent suffixes cut over the sweep"
# Determinism: one seed twice, the same schedules and outcomes.
a=$(MADSIM_TEST_SEED=7 RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" cargo test -p strand-sim --test replicas --locked -- --nocapture 2>&1 | grep "^schedule")
b=$(MADSIM_TEST_SEED=7 RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" cargo test -p strand-sim --test replicas --locked -- --nocapture 2>&1 | grep "^schedule")
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "ci/run.sh: sim/tests/replicas.rs seed 7 is not deterministic"; exit 1; }
echo "seed 7: replicas schedules identical twice"
# The planted bug it must see: a replica acknowledging writes it never synced.
if STRAND_PLANTED_BUGS=replica-ack-before-fsync RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=64 \
     cargo test -p strand-sim --test replicas --locked >"$logs/sim-replicas-planted.log" 2>&1; then
  echo "ci/run.sh: planted bug 'replica-ack-before-fsync' was NOT caught by sim/tests/replicas.rs"; exit 1
fi
grep -q "panicked" "$logs/sim-replicas-planted.log" || { echo "ci/run.sh: the planted replicas run failed without a violation:"; tail -20 "$logs/sim-replicas-planted.log"; exit 1; }
echo "planted bug 'replica-ack-before-fsync': caught by sim/tests/replicas.rs"
# Three partitions' replicas on three madsim nodes (each node's ReplicaManager, one transport
# shared through its router), kills with power loss, pauses, clogs.
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=8 \
  cargo test -p strand-sim --test replica_driver --locked 2>&1 | tee -a "$logs/sim-replicas.log"
a=$(MADSIM_TEST_SEED=9 RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" cargo test -p strand-sim --test replica_driver --locked -- --nocapture 2>&1 | grep "^replica_driver:")
b=$(MADSIM_TEST_SEED=9 RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" cargo test -p strand-sim --test replica_driver --locked -- --nocapture 2>&1 | grep "^replica_driver:")
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "ci/run.sh: sim/tests/replica_driver.rs seed 9 is not deterministic: '$a' vs '$b'"; exit 1; }
echo "seed 9: $a (twice)"
if STRAND_PLANTED_BUGS=replica-ack-before-fsync RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=8 \
     cargo test -p strand-sim --test replica_driver --locked >"$logs/sim-replica-driver-planted.log" 2>&1; then
  echo "ci/run.sh: planted bug 'replica-ack-before-fsync' was NOT caught by sim/tests/replica_driver.rs"; exit 1
fi
grep -q "panicked" "$logs/sim-replica-driver-planted.log" || { echo "ci/run.sh: the planted replica_driver run failed without a violation:"; tail -20 "$logs/sim-replica-driver-planted.log"; exit 1; }
echo "planted bug 'replica-ack-before-fsync': caught by sim/tests/replica_driver.rs"
# And an idempotent producer's retry stored twice (de-duplication off) on the replicated path.
if STRAND_PLANTED_BUGS=producer-dedup-off RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=8 \
     cargo test -p strand-sim --test replica_driver --locked >"$logs/sim-replica-driver-dedup.log" 2>&1; then
  echo "ci/run.sh: planted bug 'producer-dedup-off' was NOT caught by sim/tests/replica_driver.rs"; exit 1
fi
grep -q "twice" "$logs/sim-replica-driver-dedup.log" || { echo "ci/run.sh: the planted dedup run failed without a duplicate:"; tail -20 "$logs/sim-replica-driver-dedup.log"; exit 1; }
echo "planted bug 'producer-dedup-off': caught by sim/tests/replica_driver.rs"
done_step

step "madsim: the broker's metadata quorum on 3 nodes (sim/tests/cluster_metadata.rs)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=16 \
  cargo test -p strand-sim --test cluster_metadata --locked 2>&1 | tee "$logs/sim-cluster.log"
# Determinism: one seed, two processes, the same fingerprint (history, final image, sim time).
for seed in 11 12; do
  a=$(MADSIM_TEST_SEED=$seed RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" cargo test -p strand-sim --test cluster_metadata --locked -- --nocapture 2>/dev/null | grep "cluster_metadata fingerprint")
  b=$(MADSIM_TEST_SEED=$seed RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" cargo test -p strand-sim --test cluster_metadata --locked -- --nocapture 2>/dev/null | grep "cluster_metadata fingerprint")
  [ -n "$a" ] && [ "$a" = "$b" ] || { echo "ci/run.sh: sim/tests/cluster_metadata.rs seed $seed is not deterministic: '$a' vs '$b'"; exit 1; }
  echo "seed $seed: $a (twice)"
done
# Regression seeds: admin changes checked against a lagging image (1796427191703958917); a
# proposal committed while its broker caught up from a snapshot answered as an error
# (1796431416972884182); a deleted topic's directory kept because the leader-epoch checkpoint
# was not known as a log file (1796686276775215751, five nodes, pauses in the nemesis); the
# test's own check that something was created counted only topics not deleted since
# (1796692343668438061: the client had deleted every one it made).
for seed in 1796427191703958917 1796431416972884182 1796686276775215751 1796692343668438061; do
  MADSIM_TEST_SEED=$seed RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" \
    cargo test -p strand-sim --test cluster_metadata --locked >>"$logs/sim-cluster.log" 2>&1 || { echo "ci/run.sh: regression seed $seed fails"; exit 1; }
done
if STRAND_PLANTED_BUGS=raft-meta-skip-catch-up RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$SIM_TARGET_DIR" MADSIM_TEST_NUM=16 \
     cargo test -p strand-sim --test cluster_metadata --locked >"$logs/sim-cluster-planted.log" 2>&1; then
  echo "ci/run.sh: planted bug 'raft-meta-skip-catch-up' was NOT caught by sim/tests/cluster_metadata.rs"; exit 1
fi
grep -q "violations\|panicked" "$logs/sim-cluster-planted.log" || { echo "ci/run.sh: the planted cluster run failed without a violation:"; tail -20 "$logs/sim-cluster-planted.log"; exit 1; }
echo "planted bug 'raft-meta-skip-catch-up': caught by sim/tests/cluster_metadata.rs"
done_step

if [ -x sim/run ]; then
  step "simulator: sim/run ci"
  STRAND_SIM_TARGET_DIR="$SIM_TARGET_DIR" sim/run ci 2>&1 | tee "$logs/sim.log"
  done_step
else
  summary+=("$(printf '%-60s skipped (no executable sim/run)' 'simulator: sim/run ci')")
fi

summary+=("$(printf '%-60s %4d s' 'total' $(( $(date +%s) - started )))")
print_summary
echo "ci/run.sh: passed"
