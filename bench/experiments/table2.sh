#!/usr/bin/env bash
# The paper's Table 2: weight sharing (two layers, each used at every other depth: 0 1 0 1),
# LayerDrop (rate 0.2 in training, every other depth pruned afterwards, which with that sharing
# drops a whole layer) and Quant-Noise (iPQ proxy, at the rate Figure 3 finds best for the LM
# after iPQ, on validation), alone and combined, on the uncompressed and the iPQ-compressed model.
# The KJV language model with 4 layers, so that sharing leaves 2 layers' weights and sharing with
# pruning 1. Writes table2.csv, table2.summary.csv, table2.md.
source "$(dirname "$0")/common.sh"
parse_args "$@"

# Figure 3's best Quant-Noise rate (0 < p < 1) for the LM after iPQ, on validation: this folder's
# figure3.summary.csv, or the published one.
best_lm_rate() {
  local summary="$OUT/figure3.summary.csv"
  [ -f "$summary" ] || summary="$ROOT/docs/results/figure3.summary.csv"
  awk -F, '$2 == "lm" && $5 == "ipq" && $3 > 0 && $3 < 1 && (best == "" || $10 < best) { best = $10; rate = $3 }
           END { if (rate == "") exit 1; print rate }' "$summary" ||
    { echo "table2.sh: no LM iPQ rows in $summary (run figure3.sh)" >&2; return 1; }
}
RATE=$(best_lm_rate)
echo "table2.sh: Quant-Noise at p = $RATE (Figure 3's best for the LM after iPQ)" >&2
MODELS="none cshare ld+prune2 cshare_ld+prune2 pq$RATE cshare_pq$RATE ld_pq$RATE+prune2 cshare_ld_pq$RATE+prune2"
for seed in $SEEDS; do
  for name in $MODELS; do echo "model_job lm4 $name $seed ipq"; done
done >"$OUT/table2.jobs"
run_jobs "$OUT/table2.jobs"

label() {
  local name=$1 text=""
  [[ "$name" == *share* ]] && text+=" + share"
  [[ "$name" == *ld* ]] && text+=" + LayerDrop (pruned)"
  [[ "$name" == *pq* ]] && text+=" + Quant-Noise (p = $RATE)"
  if [ -z "$text" ]; then echo "baseline"; else echo "${text# + }"; fi
}
for scheme in float ipq; do
  for name in $MODELS; do echo "$(label "$name")|lm4|$name|$scheme"; done
done >"$OUT/table2.rows"
write_results table2 "$OUT/table2.rows"
