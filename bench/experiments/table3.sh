#!/usr/bin/env bash
# The paper's Table 3: Quant-Noise during training or only during finetuning. A model trained
# without noise; the same finetuned with Quant-Noise (iPQ proxy, p = 0.1) for half as many updates
# as its training; the same finetuned as long without noise (the control: finetuning alone); a
# model trained with Quant-Noise from the start. Each then compressed with iPQ. All three tasks.
# Writes table3.csv, table3.summary.csv and table3.md.
source "$(dirname "$0")/common.sh"
parse_args "$@"

MODELS="none none+ft_none none+ft_pq0.1 pq0.1"
for task in image lm pairs; do
  for seed in $SEEDS; do
    for name in $MODELS; do echo "model_job $task $name $seed ipq"; done
  done
done >"$OUT/table3.jobs"
run_jobs "$OUT/table3.jobs"

label() {
  case "$1" in
    none) echo "trained without Quant-Noise" ;;
    none+ft_none) echo "+ finetuned without noise" ;;
    none+ft_pq0.1) echo "+ finetuned with Quant-Noise" ;;
    pq0.1) echo "trained with Quant-Noise" ;;
  esac
}
for task in image lm pairs; do
  for scheme in float ipq; do
    for name in $MODELS; do echo "$(label "$name")|$task|$name|$scheme"; done
  done
done >"$OUT/table3.rows"
write_results table3 "$OUT/table3.rows"
