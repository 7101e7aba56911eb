#!/usr/bin/env bash
# Copies the results docs/results.md cites from a results folder into docs/results/: each
# experiment's CSV, summary and table, the plots, and the runs (the JSON line `qnoise quantize`
# printed per model and scheme), from which the scripts can rebuild every table without training.
source "$(dirname "$0")/common.sh"
parse_args "$@"

target="$ROOT/docs/results"
mkdir -p "$target/runs"
for experiment in table1 table2 table3 figure3 training_length; do
  for suffix in csv summary.csv md; do
    [ -f "$OUT/$experiment.$suffix" ] && cp "$OUT/$experiment.$suffix" "$target/"
  done
done
for file in figure2.csv figure2.png figure3.png; do [ -f "$OUT/$file" ] && cp "$OUT/$file" "$target/"; done
cp "$OUT"/runs/*.json "$target/runs/"
echo "publish.sh: copied $(ls "$target" | wc -l) files and $(ls "$target/runs" | wc -l) runs to $target" >&2
