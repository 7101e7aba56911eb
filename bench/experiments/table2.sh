#!/usr/bin/env bash
# The paper's Table 2: weight sharing (pairs of adjacent layers share weights), LayerDrop (rate 0.2
# in training, every other layer pruned afterwards) and Quant-Noise (iPQ proxy, p = 0.1), alone
# and combined, on the uncompressed and the iPQ-compressed model. The KJV language model with 4
# layers, so that sharing and pruning leave 2. Writes table2.csv, table2.summary.csv, table2.md.
source "$(dirname "$0")/common.sh"
parse_args "$@"

MODELS="none share ld+prune2 share_ld+prune2 pq0.1 share_pq0.1 ld_pq0.1+prune2 share_ld_pq0.1+prune2"
for seed in $SEEDS; do
  for name in $MODELS; do echo "model_job lm4 $name $seed ipq"; done
done >"$OUT/table2.jobs"
run_jobs "$OUT/table2.jobs"

label() {
  local name=$1 text=""
  [[ "$name" == share* ]] && text+=" + share"
  [[ "$name" == *ld* ]] && text+=" + LayerDrop (pruned)"
  [[ "$name" == *pq0.1* ]] && text+=" + Quant-Noise"
  if [ -z "$text" ]; then echo "baseline"; else echo "${text# + }"; fi
}
for scheme in float ipq; do
  for name in $MODELS; do echo "$(label "$name")|lm4|$name|$scheme"; done
done >"$OUT/table2.rows"
write_results table2 "$OUT/table2.rows"
