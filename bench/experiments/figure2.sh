#!/usr/bin/env bash
# The paper's Figure 2: model size against metric for every model and scheme of Table 1 (float,
# int4, int8, iPQ, iPQ + int8 activations; trained without noise, with QAT, with Quant-Noise; the
# three tasks) and,
# for the language model, Table 2's 4-layer models. Needs table1.sh and table2.sh run first (same
# options); writes figure2.csv and figure2.png.
source "$(dirname "$0")/common.sh"
parse_args "$@"

for experiment in table1 table2; do
  [ -f "$OUT/$experiment.summary.csv" ] || { echo "figure2.sh: run $experiment.sh first ($OUT/$experiment.summary.csv)" >&2; exit 1; }
done
{
  head -1 "$OUT/table1.summary.csv"
  tail -n +2 "$OUT/table1.summary.csv"
  tail -n +2 "$OUT/table2.summary.csv"
} >"$OUT/figure2.csv"
echo "figure2.sh: wrote $OUT/figure2.csv" >&2
plot figure2.gp
