#!/usr/bin/env bash
# Installs what building and running the platform needs on a Debian machine:
# protoc (to compile the .proto files), ClickHouse server and client, curl, a Rust
# toolchain if there is none, and pylance and scikit-learn (the ML sidecar's tests read
# its Lance training sets back from Python and fit scikit-learn on them for parity).
# Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if ! python3 -c 'import lance, sklearn' >/dev/null 2>&1; then
  echo "installing pylance and scikit-learn with pip"
  # Debian's own python3 refuses system-wide pip installs (PEP 668): install for the user.
  python3 -m pip install --quiet --disable-pip-version-check pylance scikit-learn 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages pylance scikit-learn
fi
