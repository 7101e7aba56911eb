#!/usr/bin/env bash
# The experiment scripts' smoke test (ctest): table3.sh in --tiny mode from an empty folder, then
# checks that every row has a number for each seed and that the summary and table were written.
set -euo pipefail
out=${1:?usage: smoke_test.sh OUT_DIR}
rm -rf "$out"
"$(dirname "$0")/table3.sh" --tiny --out "$out" --jobs 2 >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
rows=$(($(wc -l <"$out/table3.csv") - 1))
# 3 tasks x 4 models x (float, ipq) x 1 seed.
[ "$rows" -eq 24 ] || { echo "table3.csv has $rows rows, expected 24"; cat "$out/table3.csv"; exit 1; }
if awk -F, 'NR > 1 && ($10 == "" || $11 == "" || $7 <= 0) { bad = 1 } END { exit !bad }' "$out/table3.csv"; then
  echo "table3.csv has a row without a size or metric"; cat "$out/table3.csv"; exit 1
fi
grep -q '^| lm | trained with Quant-Noise | ipq |' "$out/table3.md" || { echo "table3.md lacks the lm iPQ row"; cat "$out/table3.md"; exit 1; }
# Cached: a second run retrains nothing and gives the same table.
before=$(cat "$out/table3.md")
"$(dirname "$0")/table3.sh" --tiny --out "$out" --jobs 2 >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
[ "$(cat "$out/table3.md")" = "$before" ] || { echo "a second run changed table3.md"; exit 1; }
echo "smoke test passed: $rows rows"
