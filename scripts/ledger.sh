#!/bin/sh
# Copy what the ledger of long runs keeps (results/.gitignore says what: finished folds, metrics,
# reports, learning curves) of a run directory into results/, to commit between sittings:
#   sh scripts/ledger.sh runs/full-seed003        # -> results/full-seed003
# A later sitting resumes from it: voxemo reproduce NAME --full --resume --out results/full-NAME ...
set -e
src=$(cd "$1" && pwd)
dst=$(cd "$(dirname "$0")/.." && pwd)/results/$(basename "$src")
(cd "$src" && find . -type f ! -name "*.safetensors" ! -name last.json ! -name confusion.png ! -name class_counts.png) |
  while read -r f; do mkdir -p "$dst/$(dirname "$f")"; cp -p "$src/$f" "$dst/$f"; done
