#!/usr/bin/env bash
# How heavy is the core install? bash bench/install_size.sh [SPEC] (default: this checkout, core only).
# A fresh virtual environment gets torch first (the CPU build), then spikeprune; the script prints
# what spikeprune adds on disk, the install's wall-clock time and the package count.
set -euo pipefail
spec=${1:-$(cd "$(dirname "$0")/.." && pwd)}
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
source "$venv/bin/activate"
pip install -q --upgrade pip >/dev/null
pip install -q torch==2.13.0
base=$(du -sm "$venv" | cut -f1)
start=$(date +%s.%N)
pip install -q "$spec"
end=$(date +%s.%N)
total=$(du -sm "$venv" | cut -f1)
echo "torch and pip: ${base} MiB; spikeprune adds $((total - base)) MiB ($(pip list 2>/dev/null | tail -n +3 | wc -l) packages in all) in $(python3 -c "print(round($end - $start, 1))") s"
du -sm "$venv"/lib/python3*/site-packages/* | sort -rn | head -8
rm -rf "$(dirname "$venv")"
