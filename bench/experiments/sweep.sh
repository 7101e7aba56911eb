# The noise-rate sweep shared by figure3.sh and table1.sh (sourced after common.sh): for each task
# and seed, models trained with Quant-Noise for iPQ at every rate of the task's sweep (0: no noise,
# 1: QAT) compressed with iPQ, and the same for int8 noise compressed to int8.

# The rates of a task's sweep: Figure 3's for image and lm; for pairs (Table 1 only) the rate that
# did best on the other two tasks (0.01), Table 3's (0.1) and the ends, to fit the hour.
sweep_rates() {
  case "$1" in pairs) echo "0 0.01 0.1 1" ;; *) echo "$SWEEP_RATES" ;; esac
}

# "pq0.1" -> rate 0.1 model name; rate 0 is the model trained without noise.
sweep_model() {
  local family=$1 rate=$2
  if [ "$rate" = 0 ]; then echo none; elif [ "$family" = pq ]; then echo "pq$rate"; else echo "${family}_$rate"; fi
}

# Jobs of the sweep of the tasks given, one per (task, seed, rate, family).
sweep_jobs() {
  local task seed rate
  for task in "$@"; do
    for seed in $SEEDS; do
      for rate in $(sweep_rates "$task"); do
        echo "model_job $task $(sweep_model pq "$rate") $seed ipq"
        [ "$rate" = 0 ] || echo "model_job $task $(sweep_model int8 "$rate") $seed int8"
      done
      echo "model_job $task none $seed int8"
    done
  done
}

# Rows "<rate>|task|model|scheme" of the sweep, for collect_rows; "float" rows are the iPQ sweep's
# models before quantization (what the noise cost them in float).
sweep_rows() {
  local task rate
  for task in "$@"; do
    for rate in $(sweep_rates "$task"); do
      echo "$rate|$task|$(sweep_model pq "$rate")|ipq"
      echo "$rate|$task|$(sweep_model int8 "$rate")|int8"
      echo "$rate|$task|$(sweep_model pq "$rate")|float"
    done
  done
}
