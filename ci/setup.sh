#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine that has only Rust, Python, gcc and
# node: kcat (a librdkafka CLI) and kafka-python. Idempotent: does nothing when both are there.
set -euo pipefail

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v make >/dev/null 2>&1 || need_apt+=(make)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ci/setup.sh: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c "import kafka" >/dev/null 2>&1; then
  echo "ci/setup.sh: installing kafka-python"
  python3 -m pip install -q kafka-python
fi
kcat -V 2>/dev/null | head -1 || true
python3 -c "import kafka; print('kafka-python', kafka.__version__)"
