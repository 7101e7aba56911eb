#!/usr/bin/env bash
# The paper's Table 1: int4, int8, iPQ and iPQ with int8 activations, each applied to the float
# model trained without noise (post-training quantization), to a model trained with the scheme's
# quantization on every weight (QAT, p = 1), and to one trained with Quant-Noise at the rate of
# the sweep (figure3.sh) that did best on validation after quantization. Both tasks; size, ratio,
# accuracy / perplexity, for the image classifier, the language model and the sentence-pair
# classifier. Writes table1.csv, table1.summary.csv and table1.md.
source "$(dirname "$0")/common.sh"
source "$EXPERIMENTS_DIR/sweep.sh"
parse_args "$@"

# int4 has no sweep of its own (Figure 3 has iPQ and int8): two rates besides QAT.
INT4_RATES="0.1 0.5"

TASKS="image lm pairs"
{
  sweep_jobs table1 $TASKS
  for task in $TASKS; do
    for seed in $SEEDS; do
      echo "model_job $task none $seed int4 ipq+int8"
      echo "model_job $task pq1 $seed ipq+int8"
      for rate in $INT4_RATES 1; do echo "model_job $task int4_$rate $seed int4"; done
    done
  done
} >"$OUT/table1.jobs"
run_jobs "$OUT/table1.jobs"

# The rate (not 0, not 1) whose models did best on validation after `scheme`, averaged over seeds.
best_rate() {
  local task=$1 family=$2 scheme=$3 rates=$4
  local rate seed best="" best_score=""
  for rate in $rates; do
    [ "$rate" = 0 ] || [ "$rate" = 1 ] && continue
    local sum=0 n=0 value metric
    for seed in $SEEDS; do
      local run="$OUT/runs/$task.$(sweep_model "$family" "$rate").s$seed.$scheme.json"
      value=$(jq -r '.compressed.valid[.metric]' "$run")
      metric=$(jq -r '.metric' "$run")
      sum=$(awk -v a="$sum" -v b="$value" 'BEGIN { print a + b }')
      n=$((n + 1))
    done
    # Higher accuracy is better, lower perplexity is better: score = mean, negated for perplexity.
    local score
    score=$(awk -v s="$sum" -v n="$n" -v m="$metric" 'BEGIN { v = s / n; print (m == "accuracy") ? v : -v }')
    if [ -z "$best" ] || awk -v a="$score" -v b="$best_score" 'BEGIN { exit !(a > b) }'; then
      best=$rate best_score=$score
    fi
  done
  echo "$best"
}

{
  for task in $TASKS; do
    echo "float|$task|none|float"
    pq_rate=$(best_rate "$task" pq ipq "$(sweep_rates table1 "$task")")
    int8_rate=$(best_rate "$task" int8 int8 "$(sweep_rates table1 "$task")")
    int4_rate=$(best_rate "$task" int4 int4 "$INT4_RATES")
    echo "no noise|$task|none|int4"
    echo "QAT (p = 1)|$task|int4_1|int4"
    echo "Quant-Noise (p = $int4_rate)|$task|int4_$int4_rate|int4"
    echo "no noise|$task|none|int8"
    echo "QAT (p = 1)|$task|int8_1|int8"
    echo "Quant-Noise (p = $int8_rate)|$task|int8_$int8_rate|int8"
    echo "no noise|$task|none|ipq"
    echo "QAT (p = 1)|$task|pq1|ipq"
    echo "Quant-Noise (p = $pq_rate)|$task|pq$pq_rate|ipq"
    echo "no noise|$task|none|ipq+int8"
    echo "QAT (p = 1)|$task|pq1|ipq+int8"
    echo "Quant-Noise (p = $pq_rate)|$task|pq$pq_rate|ipq+int8"
  done
} >"$OUT/table1.rows"
# The Quant-Noise iPQ models with int8 activations, for the rates just chosen.
while IFS='|' read -r label task name scheme; do
  for seed in $SEEDS; do echo "model_job $task $name $seed $scheme"; done
done < <(grep 'ipq+int8' "$OUT/table1.rows") | sort -u >"$OUT/table1.more.jobs"
run_jobs "$OUT/table1.more.jobs"
write_results table1 "$OUT/table1.rows"
