# The noise-rate sweep shared by figure3.sh and table1.sh (sourced after common.sh): for each task
# and seed, models trained with Quant-Noise for iPQ at every rate of the task's sweep (0: no noise,
# 1: QAT) compressed with iPQ, and the same for int8 noise compressed to int8. The first argument
# of each function names the experiment whose rates to use: figure3 or table1.

# The rates of a task's sweep for an experiment: Figure 3's ($SWEEP_RATES) for every task of
# figure3; table1 takes the same for image and lm, and for pairs only the rate that did best on the
# other two tasks (0.01), Table 3's (0.1) and the ends, to fit the hour (Table 1's pairs rows pick
# their Quant-Noise rate among these, whatever else the results folder holds).
sweep_rates() {
  local experiment=$1 task=$2
  case "$experiment.$task" in
    table1.pairs) echo "0 0.01 0.1 1" ;;
    figure3.* | table1.*) echo "$SWEEP_RATES" ;;
    *) echo "sweep.sh: unknown experiment '$experiment'" >&2; return 1 ;;
  esac
}

# "pq0.1" -> rate 0.1 model name; rate 0 is the model trained without noise.
sweep_model() {
  local family=$1 rate=$2
  if [ "$rate" = 0 ]; then echo none; elif [ "$family" = pq ]; then echo "pq$rate"; else echo "${family}_$rate"; fi
}

# Jobs of an experiment's sweep of the tasks given, one per (task, seed, rate, family):
# sweep_jobs EXPERIMENT TASK...
sweep_jobs() {
  local experiment=$1 task seed rate rates
  shift
  for task in "$@"; do
    rates=$(sweep_rates "$experiment" "$task") || return 1
    for seed in $SEEDS; do
      for rate in $rates; do
        echo "model_job $task $(sweep_model pq "$rate") $seed ipq"
        [ "$rate" = 0 ] || echo "model_job $task $(sweep_model int8 "$rate") $seed int8"
      done
      echo "model_job $task none $seed int8"
    done
  done
}

# Rows "<rate>|task|model|scheme" of an experiment's sweep, for collect_rows; "float" rows are the
# iPQ sweep's models before quantization (what the noise cost them in float):
# sweep_rows EXPERIMENT TASK...
sweep_rows() {
  local experiment=$1 task rate rates
  shift
  for task in "$@"; do
    rates=$(sweep_rates "$experiment" "$task") || return 1
    for rate in $rates; do
      echo "$rate|$task|$(sweep_model pq "$rate")|ipq"
      echo "$rate|$task|$(sweep_model int8 "$rate")|int8"
      echo "$rate|$task|$(sweep_model pq "$rate")|float"
    done
  done
}
