#!/usr/bin/env bash
# Does Quant-Noise pay off once the models train longer? The other experiments train each model
# for one short run (docs/results.md); this one trains the Fashion-MNIST CNN 3x longer (3 epochs)
# and the language model 3.4x longer (2 epochs of the whole training split), without noise and
# with Quant-Noise p = 0.1, and compresses them with iPQ as Table 1 does. Writes
# training_length.csv, training_length.summary.csv and training_length.md.
source "$(dirname "$0")/common.sh"
parse_args "$@"

MODELS="none pq0.1"
for task in image-long lm-long; do
  for seed in $SEEDS; do
    for name in $MODELS; do echo "model_job $task $name $seed ipq"; done
  done
done >"$OUT/training_length.jobs"
run_jobs "$OUT/training_length.jobs"

for task in image-long lm-long; do
  for scheme in float ipq; do
    echo "no noise|$task|none|$scheme"
    echo "Quant-Noise (p = 0.1)|$task|pq0.1|$scheme"
  done
done >"$OUT/training_length.rows"
write_results training_length "$OUT/training_length.rows"
