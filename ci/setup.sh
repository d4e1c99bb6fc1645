#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine that has only Rust, Python, gcc and
# node: kcat (Debian package, a librdkafka CLI), make and zlib1g-dev (to build librdkafka for the
# rdkafka crate) and kafka-python (pip; 3.0.12 is the version tested with Python 3.11).
# Idempotent: does nothing when everything is there. Runs apt-get update only when needed.
set -euo pipefail

KAFKA_PYTHON_VERSION="${KAFKA_PYTHON_VERSION:-3.0.12}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  echo "ci/setup.sh: apt-get install $*"
  # Package lists are absent on a fresh image, or stale: update, then retry, only on failure.
  if ! $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v make >/dev/null 2>&1 || need_apt+=(make)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
command -v timeout >/dev/null 2>&1 || need_apt+=(coreutils)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "${need_apt[@]}"
fi

if ! python3 -c "import kafka" >/dev/null 2>&1; then
  echo "ci/setup.sh: pip install kafka-python==$KAFKA_PYTHON_VERSION"
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  pip_log=$(mktemp)
  if ! python3 -m pip install -q "kafka-python==$KAFKA_PYTHON_VERSION" >"$pip_log" 2>&1; then
    if grep -q externally-managed "$pip_log"; then
      # Debian's own python3 (PEP 668): install for this user next to the system packages.
      python3 -m pip install -q --user --break-system-packages "kafka-python==$KAFKA_PYTHON_VERSION"
    else
      cat "$pip_log"; rm -f "$pip_log"; exit 1
    fi
  fi
  rm -f "$pip_log"
fi

# Verify: the tests fail (not skip) without these.
echo "ci/setup.sh: $(kcat -V 2>&1 | grep -m1 -i 'version' || kcat -V 2>&1 | head -1)"
python3 -c "import kafka, sys; print('ci/setup.sh: kafka-python', kafka.__version__, 'on Python', sys.version.split()[0])"
