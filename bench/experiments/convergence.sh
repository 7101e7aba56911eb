#!/usr/bin/env bash
# Issue 24: after iPQ, does a model trained to convergence with Quant-Noise beat one trained
# without, and QAT? Trains docs/training.md's models to convergence (the full-width EfficientNet,
# 7 epochs; the KJV LM at d_model 256 with adaptive input and softmax, 5 epochs), every arm for the
# same number of updates: no noise, PQ proxy noise at 0.025, 0.05, 0.1 and 0.2, and iPQ QAT (exact
# noise at rate 1). Each model is then compressed with its family's iPQ plan and the plan's full
# finetuning (400 updates per stage), with Quant-Noise on the layers not yet quantized at the arm's
# own training rate: none for the no-noise arm and for QAT.
#
# Table 3's question at the same budget: "ft_pq0.1" trains without noise for all but the last
# 2 epochs (image; the LM: 1) and finetunes from there with Quant-Noise p = 0.1 for those epochs
# (a fresh schedule, qnoise train --init-from), ending at the same update count as every arm.
#
# The same models are also compressed with a harsher iPQ plan (plans/<task>.fewer_centroids.json):
# the built-in plan with up to 8x fewer centroids per layer (image: one centroid per 32 blocks
# instead of 4; the LM: at most 32 centroids per layer instead of 256). The built-in plans give
# these small layers 4-128 blocks per centroid (LM attention and FFN, image), where the paper's
# have hundreds to thousands, so that iPQ costs a trained model less here; this plan asks whether
# Quant-Noise pays where iPQ costs more. QAT's exact noise learns codebooks of the built-in plan's
# size; "pq1_fewer" is QAT against codebooks of the harsher plan's size, compressed by that plan only.
#
# The int4 question the same way (issue 24, item 3): the paper's int4, per-tensor weight ranges and
# every Linear/Conv2d input at 4 bits, after no noise (the no-noise model above), int4 QAT
# (int4t_1: weights and inputs fake-quantized in every step) and int4 Quant-Noise at the rate
# fairseq's Quant-Noise README gives for scalar quantization (int4t_0.5) and at 0.1. Each model is
# quantized twice: with the input ranges it trained with, or for the no-noise model min-max ones
# ("int4a4"), and with ranges calibrated afresh by least squared error ("int4a4mse",
# --activation-ranges mse). The no-noise model is also quantized the way Table 1 does (per-channel
# int4, float inputs).
#
# Jobs run in phases, each task by task (image first: its jobs are short) and arm by arm across the
# seeds: the arms the main question rests on (no noise, p = 0.1, QAT, and right after QAT its twin
# "pq1_fewer"), then the other arms, each model compressed by both plans as soon as it is trained;
# then the int4 arms (no noise, 0.5, QAT, 0.1). So a partial run already answers the first table
# with every seed.
#
# Every step resumes: training checkpoints every --save-every updates and restarts with --resume,
# iPQ restarts after its last finished stage, and finished results are kept. Jobs run one thread
# each; interrupt at any time and run the same command again to continue. Each model's training and
# each result are locked, so that two runs on one folder never do the same work at once.
#
#   convergence.sh [--out DIR] [--jobs N] [--seeds "1 2 3"] [--tasks "image lm"] [--arms "..."]
#                  [--int4-arms "..."]
#   convergence.sh --table   # tables and plot from the finished runs only (docs/results/convergence)
source "$(dirname "$0")/common.sh"

TASKS="image lm" ARMS="none pq0.1 pq1 pq0.05 pq0.2 pq0.025 ft_pq0.1" INT4_ARMS="none int4t_0.5 int4t_1 int4t_0.1"
TABLE_ONLY=0 ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) TASKS=${2:?--tasks needs a list}; shift ;;
    --arms) ARMS=${2?--arms needs a list}; shift ;;
    --int4-arms) INT4_ARMS=${2?--int4-arms needs a list}; shift ;;
    --table) TABLE_ONLY=1 ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
parse_args --seeds "1 2 3" --out "$ROOT/build/experiments/convergence" "${ARGS[@]}"
# Where results and evaluation logs are published (the test points it elsewhere).
PUBLISHED=${CONVERGENCE_PUBLISHED:-$ROOT/docs/results/convergence}
export TASKS ARMS INT4_ARMS PUBLISHED

convergence_task_args() {
  case "$1" in
    image) echo "--task image" ;;
    lm) echo "--task lm --data $(kjv_data) --adaptive-input --adaptive-softmax" ;;
  esac
}
# Epochs of every arm, and of the last part that a finetuned arm ("ft_*") trains with noise.
convergence_epochs() { case "$1" in image) echo 7 ;; lm) echo 5 ;; esac; }
finetune_epochs() { case "$1" in image) echo 2 ;; lm) echo 1 ;; esac; }
# Quant-Noise rate on the not-yet-quantized layers during iPQ finetuning.
finetune_noise() {
  case "$1" in none | pq1 | pq1_fewer) echo 0 ;; pq*) echo "${1#pq}" ;; ft_pq*) echo "${1#ft_pq}" ;; esac
}
# Exact noise's codebook sizes read from plans/<task>.fewer_centroids.json (the "pq1_fewer" arm):
# its blocks_per_centroid and its stages' largest n_centroids (every stage has the same here).
fewer_centroids_noise_args() {
  jq -r '"--pq-noise-blocks-per-centroid \(.blocks_per_centroid) --pq-noise-centroids \([.stages[].n_centroids] | max)"' \
    "$EXPERIMENTS_DIR/plans/$1.fewer_centroids.json"
}

# Trains (resuming) one model unless its training finished; publishes its evaluation log. "ft_<arm>"
# first trains "first_part" without noise for the epochs before the finetuning ones. Training
# checkpoints to <id>.partial.pt, renamed to <id>.pt when it ends: a model file is a finished one
# (a published log may come from another machine, so it says nothing about the local checkpoint).
convergence_train() {
  local id="$1.$2.s$3"
  [ -f "$OUT/models/$id.pt" ] && return 0
  ( flock 9 && convergence_train_locked "$@" ) 9>"$OUT/models/$id.lock"
}
convergence_train_locked() {
  local task=$1 name=$2 seed=$3
  local id="$task.$name.s$seed"
  local model="$OUT/models/$id.pt" partial="$OUT/models/$id.partial.pt" log="$OUT/logs/$id"
  [ -f "$model" ] && return 0
  local schedule=(--epochs "$(convergence_epochs "$task")") noise=$name
  if [[ "$name" == ft_* ]]; then
    noise=${name#ft_}
    local first="$OUT/models/$task.first_part.s$seed.pt"
    schedule=(--epochs "$(finetune_epochs "$task")")
    # Resuming continues the finetuning itself: --init-from only starts it.
    [ -f "$partial" ] || {
      convergence_train "$task" first_part "$seed" || return 1
      schedule+=(--init-from "$first")
    }
  elif [ "$name" = first_part ]; then
    noise=none
    schedule=(--epochs "$(($(convergence_epochs "$task") - $(finetune_epochs "$task")))")
  fi
  local resume=() codebooks=()
  [ -f "$partial" ] && resume=(--resume)
  # shellcheck disable=SC2207
  [ "$name" = pq1_fewer ] && noise=pq1 codebooks=($(fewer_centroids_noise_args "$task"))
  # shellcheck disable=SC2046
  "$QNOISE" --threads 1 train $(convergence_task_args "$task") $(model_args "$noise") "${codebooks[@]}" "${schedule[@]}" \
    --seed "$seed" --save-every 200 "${resume[@]}" --out "$partial" --progress off >>"$log.train.jsonl" \
    2>>"$log.train.err" || { echo "failed: training $id (see $log.train.err)" >&2; return 1; }
  mkdir -p "$PUBLISHED/logs"
  # A run resumed from a checkpoint older than its last evaluation evaluates that step again: the
  # log keeps the latest evaluation of each step.
  grep '"event":"eval"' "$log.train.jsonl" | awk '
    match($0, /"step":[0-9]+/) { k = substr($0, RSTART, RLENGTH); if (!(k in line)) order[++n] = k; line[k] = $0 }
    END { for (i = 1; i <= n; i++) print line[order[i]] }' >"$PUBLISHED/logs/$id.train.jsonl" || true
  mv "$partial" "$model"
}

# Trains (resuming) one model and compresses it with iPQ by each plan given: the built-in plan
# (result "ipq") and the one with fewer centroids ("fewer": result "ipq_fewer"); the results go
# to $PUBLISHED.
convergence_job() {
  local task=$1 name=$2 seed=$3 plan
  shift 3
  for plan in "${@:-builtin}"; do
    convergence_ipq "$task" "$name" "$seed" "$plan" || return 1
  done
}
convergence_ipq() {
  local task=$1 name=$2 seed=$3 plan=$4
  local id="$task.$name.s$seed" scheme=ipq config=()
  if [ "$plan" = fewer ]; then
    scheme=ipq_fewer config=(--config "$EXPERIMENTS_DIR/plans/$task.fewer_centroids.json")
  fi
  local result="$PUBLISHED/runs/$id.$scheme.json"
  [ -f "$result" ] && return 0
  convergence_train "$task" "$name" "$seed" || return 1
  (
    flock 9
    [ -f "$result" ] && exit 0
    local log="$OUT/logs/$id" qnz="$OUT/models/$id.$scheme.qnz" resume=()
    [ "$scheme" = ipq ] || log+=".$scheme"
    [ -f "$qnz.stages.pt" ] && resume=(--resume)
    "$QNOISE" --threads 1 quantize --model "$OUT/models/$id.pt" --scheme ipq "${config[@]}" \
      --finetune-noise "$(finetune_noise "$name")" "${resume[@]}" --out "$qnz" --progress off \
      >"$log.quantize.out" 2>"$log.quantize.err" || { echo "failed: iPQ of $id (see $log.quantize.err)" >&2; exit 1; }
    mkdir -p "$PUBLISHED/runs"
    grep '"event":"quantized"' "$log.quantize.out" >"$result.tmp" && mv "$result.tmp" "$result"
  ) 9>"$OUT/runs/$id.$scheme.lock"
}

# Quantizes one model (trained as above) to int4: "int4a4" per-tensor ranges and 4-bit inputs,
# "int4a4mse" the same with input ranges calibrated by least squared error, and for the no-noise
# model also "int4" as Table 1 does (per channel, float inputs).
int4_job() {
  local task=$1 name=$2 seed=$3
  local id="$task.$name.s$seed"
  local variants=(int4a4 int4a4mse) variant pending=()
  [ "$name" = none ] && variants+=(int4)
  for variant in "${variants[@]}"; do
    [ -f "$PUBLISHED/runs/$id.$variant.json" ] || pending+=("$variant")
  done
  # Published results need no model: a fresh checkout does not retrain for them.
  [ ${#pending[@]} = 0 ] && return 0
  convergence_train "$task" "$name" "$seed" || return 1
  for variant in "${pending[@]}"; do
    local result="$PUBLISHED/runs/$id.$variant.json" log="$OUT/logs/$id.$variant"
    local extra=()
    case "$variant" in
      int4a4) extra=(--scalar-ranges tensor --activation-bits 4) ;;
      int4a4mse) extra=(--scalar-ranges tensor --activation-bits 4 --activation-ranges mse) ;;
    esac
    (
      flock 9
      [ -f "$result" ] && exit 0
      "$QNOISE" --threads 1 quantize --model "$OUT/models/$id.pt" --scheme int4 "${extra[@]}" \
        --out "$OUT/models/$id.$variant.qnz" --progress off >"$log.out" 2>"$log.err" ||
        { echo "failed: $variant of $id (see $log.err)" >&2; exit 1; }
      mkdir -p "$PUBLISHED/runs"
      grep '"event":"quantized"' "$log.out" >"$result.tmp" && mv "$result.tmp" "$result"
    ) 9>"$OUT/runs/$id.$variant.lock" || return 1
  done
}

if [ "$TABLE_ONLY" = 0 ]; then
  # The phases (see the top), each over the tasks, the arms and the seeds, listed in a file of this
  # run's own: runs may share $OUT.
  jobs_file=$(mktemp --suffix=.jobs "$OUT/convergence.XXXXXX")
  trap 'rm -f "$jobs_file"' EXIT
  read -r -a ipq_arms <<<"$ARMS"
  read -r -a int4_arms <<<"$INT4_ARMS"
  main=("${ipq_arms[@]:0:3}") others=("${ipq_arms[@]:3}")
  for phase in main others int4; do
    for task in $TASKS; do
      case "$phase" in
        main) arms=("${main[@]}") ;;
        others) arms=("${others[@]}") ;;
        int4) arms=("${int4_arms[@]}") ;;
      esac
      for arm in "${arms[@]}"; do
        for seed in $SEEDS; do
          case "$phase" in
            int4) echo "int4_job $task $arm $seed" ;;
            *) echo "convergence_job $task $arm $seed builtin fewer" ;;
          esac
        done
        # QAT comes with its twin against the harsher plan's codebook sizes.
        if [ "$phase" != int4 ] && [ "$arm" = pq1 ]; then
          for seed in $SEEDS; do echo "convergence_job $task pq1_fewer $seed fewer"; done
        fi
      done
    done
  done >"$jobs_file"
  export -f convergence_train convergence_train_locked convergence_job convergence_ipq int4_job \
    convergence_task_args convergence_epochs finetune_epochs finetune_noise fewer_centroids_noise_args
  run_jobs "$jobs_file"
fi
"$EXPERIMENTS_DIR/convergence_table.py" "$PUBLISHED"
OUT=$PUBLISHED plot convergence.gp
