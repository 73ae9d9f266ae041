#!/usr/bin/env bash
# `make bench-peers`: Tally and Label Studio side by side (docs/benchmarks-peers.md).
#
# Installs Label Studio into its own virtual environment under build/ (never into Tally's),
# then runs bench/peers/run.py, which starts every server on 127.0.0.1, runs the workload on
# each system in turn and writes bench-results/peers-*.json and BENCHMARKS-peers.md.
# Extra arguments go to run.py, e.g. a quick check:
#   scripts/bench_peers.sh --texts 500 --submits 200 --reps 1 --no-report
set -euo pipefail
cd "$(dirname "$0")/.."

LS_VERSION=1.23.2
LS_VENV=${LS_VENV:-build/ls-venv}
LS_PYTHON=${LS_PYTHON:-python3}
PY=${PY:-.venv/bin/python}
DATASETS=${TALLY_DATASETS_DIR:-../shared/datasets}

if [[ ! -f "$DATASETS/ag_news_test.csv" ]]; then
  echo "error: $DATASETS/ag_news_test.csv is missing (set TALLY_DATASETS_DIR)" >&2
  exit 2
fi

installed=$("$LS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null || true)
if [[ "$installed" != "$LS_VERSION" ]]; then
  echo "Installing label-studio==$LS_VERSION into $LS_VENV (once; a few minutes)"
  mkdir -p "$(dirname "$LS_VENV")"
  "$LS_PYTHON" -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install -q --upgrade pip
  "$LS_VENV/bin/pip" install -q "label-studio==$LS_VERSION"
fi

mkdir -p build
export BENCH_PEERS_PIDFILE
BENCH_PEERS_PIDFILE=$(mktemp build/bench-peers-pids.XXXXXX)
harness=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [[ -n "$harness" ]] && kill -0 "$harness" 2>/dev/null; then
    kill -TERM "$harness" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$harness" 2>/dev/null || break; sleep 1; done
  fi
  # Whatever the harness could not stop itself (it was killed outright): its servers' groups.
  if [[ -s "$BENCH_PEERS_PIDFILE" ]]; then
    while read -r pgid; do
      [[ "$pgid" =~ ^[0-9]+$ ]] && kill -TERM -- "-$pgid" 2>/dev/null || true
    done < "$BENCH_PEERS_PIDFILE"
    sleep 3
    while read -r pgid; do
      [[ "$pgid" =~ ^[0-9]+$ ]] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done < "$BENCH_PEERS_PIDFILE"
  fi
  rm -f "$BENCH_PEERS_PIDFILE"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

TALLY_DATASETS_DIR="$DATASETS" "$PY" -m bench.peers.run --ls-venv "$(realpath -m "$LS_VENV")" "$@" &
harness=$!
wait "$harness"
