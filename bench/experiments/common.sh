# Shared by the experiment scripts (sourced, not run): modes, the models each experiment trains,
# cached training / pruning / quantization with locks (scripts share models and may run side by
# side), parallel jobs, and the CSV files the tables and plots are made from.
#
# Every model is named "<task>.<model>.s<seed>" and trained once per output folder: table1.sh and
# figure3.sh share their sweep, table3.sh reuses their "none" and "pq0.1" models.
set -euo pipefail

EXPERIMENTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$EXPERIMENTS_DIR/../.." && pwd)
QNOISE=${QNOISE:-$ROOT/build/qnoise}
# The noise rates of the paper's Figure 3.
SWEEP_RATES="0 0.01 0.05 0.1 0.2 0.5 1"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--quick | --tiny] [--out DIR] [--jobs N] [--seeds "1 2"]
  (default)  full mode: the settings of docs/results.md (about an hour on 2 cores)
  --quick    smaller models and data, one seed: a few minutes
  --tiny     a tiny model on a few hundred examples (the smoke test)
  --out DIR  results folder (default build/experiments/<mode>); models and runs are reused
  --jobs N   runs side by side, one thread each (default: the number of cores)
  --seeds S  seeds of every cell (default "1 2"; --quick and --tiny: "1")
EOF
}

parse_args() {
  MODE=full OUT="" JOBS=$(nproc 2>/dev/null || echo 2) SEEDS=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) MODE=quick ;;
      --tiny) MODE=tiny ;;
      --out) OUT=${2:?--out needs a folder}; shift ;;
      --jobs) JOBS=${2:?--jobs needs a number}; shift ;;
      --seeds) SEEDS=${2:?--seeds needs a list}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) echo "$(basename "$0"): unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
  done
  [[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "$(basename "$0"): --jobs must be a positive integer, got '$JOBS'" >&2; exit 2; }
  if [ -z "$SEEDS" ]; then
    if [ "$MODE" = full ]; then SEEDS="1 2"; else SEEDS="1"; fi
  fi
  OUT=${OUT:-$ROOT/build/experiments/$MODE}
  for tool in jq flock; do
    command -v "$tool" >/dev/null || { echo "$(basename "$0"): needs '$tool' (scripts/setup.sh installs it)" >&2; exit 1; }
  done
  [ -x "$QNOISE" ] || { echo "$(basename "$0"): no qnoise binary at $QNOISE (run scripts/setup.sh)" >&2; exit 1; }
  mkdir -p "$OUT"/{models,logs,runs}
  export MODE OUT SEEDS QNOISE
  # One thread per run (OpenBLAS included): small models train faster this way than on 2 threads,
  # and the runs fill the cores side by side.
  export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
}

# A KJV data set (`qnoise data kjv` or `kjv-pairs`), made once per results folder; prints its folder.
kjv_data() {
  local kind=${1:-kjv} dir="$OUT/data/${1:-kjv}"
  (
    flock 9
    [ -f "$dir/README.txt" ] || "$QNOISE" data "$kind" --out "$dir" >"$OUT/logs/data.$kind.log" 2>&1
  ) 9>"$OUT/data.lock" || { echo "failed: qnoise data $kind (see $OUT/logs/data.$kind.log)" >&2; return 1; }
  echo "$dir"
}

# Training options of a task, per mode. image: the EfficientNet-style CNN on Fashion-MNIST;
# lm: the adaptive-input Transformer LM on the KJV; lm4: the same with 4 layers (Table 2);
# image-long, lm-long: the same models trained 3x (image) and 3.4x (lm) longer (training_length.sh);
# pairs: the encoder classifier on KJV next-verse pairs (sentence representation), at half the
# width of docs/training.md's and one epoch (181 s of training on 1 thread, 59.8% test accuracy on
# seed 1).
task_args() {
  local task=$1
  case "$task.$MODE" in
    image.full) echo "--task image --width-multiplier 0.5 --epochs 1" ;;
    image-long.full) echo "--task image --width-multiplier 0.5 --epochs 3" ;;
    # 125 updates: fewer leave the CNN at chance (32 updates did).
    image*.quick) echo "--task image --width-multiplier 0.5 --train-limit 16000 --valid-size 1000 --epochs 1" ;;
    image*.tiny) echo "--task image --arch small-cnn --train-limit 256 --valid-size 256 --epochs 1" ;;
    lm*.*)
      local base="--task lm --data $(kjv_data) --adaptive-input --adaptive-softmax"
      local layers=2 tokens="--train-limit 500000 --epochs 1"
      [ "$task" = lm4 ] && layers=4
      [ "$task" = lm-long ] && tokens="--train-limit 0 --epochs 2"  # every training token (823k), twice
      case "$MODE" in
        full) echo "$base --layers $layers --d-model 128 --heads 4 --ffn-dim 512 $tokens" ;;
        # Adaptive bands of dimension d, d/2, d/4: blocks of 8 still divide the smallest.
        quick) echo "$base --layers $layers --d-model 64 --heads 4 --ffn-dim 256 --adaptive-factor 2 --train-limit 150000 --epochs 1" ;;
        tiny) echo "$base --layers $layers --d-model 32 --heads 2 --ffn-dim 64 --adaptive-factor 2 --seq-len 32 --train-limit 4000 --epochs 1" ;;
      esac ;;
    pairs.*)
      local base="--task pairs --data $(kjv_data kjv-pairs) --layers 2"
      case "$MODE" in
        full) echo "$base --d-model 128 --heads 4 --ffn-dim 512 --epochs 1" ;;
        quick) echo "$base --d-model 64 --heads 4 --ffn-dim 256 --train-limit 16000 --epochs 1" ;;
        tiny) echo "$base --d-model 32 --heads 2 --ffn-dim 64 --max-length 48 --train-limit 256 --epochs 1" ;;
      esac ;;
    *) echo "common.sh: unknown task '$task'" >&2; return 1 ;;
  esac
}

# Training options of a model name:
#   none             no noise
#   pq<p>            Quant-Noise for iPQ at rate p (pq1: QAT, every block replaced by its centroid)
#   int8_<p>, int4_<p>  Quant-Noise with int<bits> fake quantization at rate p (p = 1: QAT)
#   share, ld, share_ld  weight sharing (pairs of layers), LayerDrop 0.2, or both; "_pq<p>" adds noise
model_args() {
  local name=$1
  case "$name" in
    none | "") echo "" ;;
    # Rate 1 zeroes every block with the proxy noise: iPQ QAT replaces them by k-means centroids.
    pq1) echo "--quant-noise-pq 1 --pq-noise exact" ;;
    pq*) echo "--quant-noise-pq ${name#pq}" ;;
    int8_*) echo "--quant-noise-scalar ${name#int8_} --bits 8" ;;
    int4_*) echo "--quant-noise-scalar ${name#int4_} --bits 4" ;;
    # The paper's int4: per-tensor weight ranges, and the layers' inputs noised at 4 bits too.
    int4t_*) echo "--quant-noise-scalar ${name#int4t_} --bits 4 --scalar-ranges tensor --activation-bits 4" ;;
    # Pairs of layers shared in a cycle (0 1 0 1), so that pruning every other depth drops one.
    cshare*) echo "--share-cycle $(model_args "${name#c}")" ;;
    share_ld*) echo "--share-every 2 --layer-drop 0.2 $(model_args "${name#share_ld}")" ;;
    share*) echo "--share-every 2 $(model_args "${name#share}")" ;;
    ld*) echo "--layer-drop 0.2 $(model_args "${name#ld}")" ;;
    _*) model_args "${name#_}" ;;
    *) echo "common.sh: unknown model name '$name'" >&2; return 1 ;;
  esac
}

# Updates of a finetuning run (Table 3): half the training run (full: 429 updates for image, 244
# for lm, 1724 for pairs; quick: 125, 73 and 500).
finetune_steps() {
  local task=$1
  case "$MODE.$task" in
    full.image) echo 215 ;;
    full.lm*) echo 122 ;;
    full.pairs) echo 862 ;;
    quick.pairs) echo 250 ;;
    quick.image*) echo 62 ;;
    quick.lm*) echo 36 ;;
    tiny.*) echo 2 ;;
  esac
}
# Updates after each iPQ stage.
ipq_finetune_steps() {
  case "$MODE" in full) echo 50 ;; quick) echo 20 ;; tiny) echo 2 ;; esac
}

# Makes "$OUT/models/<task>.<model>.s<seed>.pt" unless it exists; prints its path. A model name
# may derive from another: "<base>+prune<k>" keeps every k-th layer of <base> (qnoise prune);
# "<base>+ft_<noise>" finetunes <base> with <noise>'s options (qnoise train --init-from).
ensure_model() {
  local task=$1 name=$2 seed=$3
  local id="$task.$name.s$seed"
  local checkpoint="$OUT/models/$id.pt"
  # `set -e` does not apply inside a subshell followed by `||`: every step checks its own status.
  (
    flock 9
    [ -f "$checkpoint" ] && exit 0
    local log="$OUT/logs/$id"
    # Written under another name and renamed when complete: an interrupted run leaves no model.
    local partial="$OUT/models/$id.partial.pt"
    rm -f "$partial"
    if [[ "$name" == *+prune* ]]; then
      local base
      base=$(ensure_model "$task" "${name%%+*}" "$seed") || exit 1
      "$QNOISE" --threads 1 prune --model "$base" --keep-every "${name##*+prune}" --out "$partial" \
        >"$log.prune.jsonl" 2>"$log.prune.err" || exit 1
    elif [[ "$name" == *+ft_* ]]; then
      local base
      base=$(ensure_model "$task" "${name%%+*}" "$seed") || exit 1
      # shellcheck disable=SC2046
      "$QNOISE" --threads 1 train $(task_args "$task") $(model_args "${name##*+ft_}") --seed "$seed" \
        --init-from "$base" --max-steps "$(finetune_steps "$task")" --out "$partial" --progress off \
        >"$log.train.jsonl" 2>"$log.train.err" || exit 1
    else
      # shellcheck disable=SC2046
      "$QNOISE" --threads 1 train $(task_args "$task") $(model_args "$name") --seed "$seed" \
        --out "$partial" --progress off >"$log.train.jsonl" 2>"$log.train.err" || exit 1
    fi
    mv "$partial" "$checkpoint" || exit 1
  ) 9>"$OUT/models/$id.lock" || { echo "failed: $id (see $OUT/logs/$id.*)" >&2; return 1; }
  echo "$checkpoint"
}

# Compresses a model with a scheme (int8, int4, ipq, ipq+int8) unless done; the result is the
# JSON line `qnoise quantize` prints, in "$OUT/runs/<task>.<model>.s<seed>.<scheme>.json". Its
# "float" part is the uncompressed model's metrics.
ensure_quantized() {
  local task=$1 name=$2 seed=$3 scheme=$4
  local id="$task.$name.s$seed.$scheme"
  local result="$OUT/runs/$id.json"
  # A result stands without its model: runs copied from another machine need no retraining.
  [ -f "$result" ] && return 0
  local checkpoint
  checkpoint=$(ensure_model "$task" "$name" "$seed")
  (
    flock 9
    [ -f "$result" ] && exit 0
    local extra=()
    [[ "$scheme" == ipq* ]] && extra=(--finetune-steps "$(ipq_finetune_steps)")
    "$QNOISE" --threads 1 quantize --model "$checkpoint" --scheme "$scheme" "${extra[@]}" \
      --out "$OUT/models/$id.qnz" --progress off >"$OUT/logs/$id.quantize.out" 2>"$OUT/logs/$id.quantize.err" ||
      exit 1
    grep '"event":"quantized"' "$OUT/logs/$id.quantize.out" >"$result.tmp" || exit 1
    mv "$result.tmp" "$result"
  ) 9>"$OUT/runs/$id.lock" || { echo "failed: $id (see $OUT/logs/$id.*)" >&2; return 1; }
}

# A job: one model of one seed and every scheme it is compressed with ("float" needs only the
# model; its row is read from any scheme's run).
model_job() {
  local task=$1 name=$2 seed=$3
  shift 3
  local scheme
  for scheme in "$@"; do ensure_quantized "$task" "$name" "$seed" "$scheme"; done
}

# Runs the jobs in the file $1 (one `model_job ...` per line), $JOBS at a time. Fails when a job did.
run_jobs() {
  local list=$1
  echo "$(basename "$0"): $(wc -l <"$list") jobs, $JOBS at a time, results in $OUT" >&2
  # shellcheck disable=SC2016
  xargs -P "$JOBS" -d '\n' -n 1 bash -c 'source "$0"; eval "$1"' "$EXPERIMENTS_DIR/common.sh" <"$list"
}

# The rows of an experiment as CSV, one per seed: reads "<row label>|<task>|<model>|<scheme>"
# lines (scheme "float": the uncompressed model) and the runs they name.
CSV_HEADER="experiment,task,row,model,scheme,seed,size_mb,ratio,metric,valid,test"
collect_rows() {
  local experiment=$1 rows=$2
  echo "$CSV_HEADER"
  local label task name scheme seed run
  while IFS='|' read -r label task name scheme; do
    [ -z "$label" ] && continue
    for seed in $SEEDS; do
      if [ "$scheme" = float ]; then
        run=$(ls "$OUT"/runs/"$task.$name.s$seed".*.json 2>/dev/null | head -1)
      else
        run="$OUT/runs/$task.$name.s$seed.$scheme.json"
      fi
      [ -n "$run" ] && [ -f "$run" ] || { echo "$(basename "$0"): no result for $task $name seed $seed $scheme" >&2; return 1; }
      jq -r --arg e "$experiment" --arg t "$task" --arg r "$label" --arg m "$name" --arg s "$scheme" --arg seed "$seed" '
        (if $s == "float" then .float else .compressed end) as $q
        | (if $s == "float" then .float32_bytes else .file_bytes end) as $bytes
        | [$e, $t, $r, $m, $s, $seed, ($bytes / 1e6), (.float32_bytes / $bytes), .metric,
           $q.valid[.metric], $q.test[.metric]] | @csv' "$run"
    done
  done <"$rows"
}

# Mean over seeds per (task, row, scheme), with the test metric's min and max: the spread.
summarize_rows() {
  local csv=$1
  echo "experiment,task,row,model,scheme,seeds,size_mb,ratio,metric,valid_mean,test_mean,test_min,test_max"
  tail -n +2 "$csv" | tr -d '"' | awk -F, '
    { key = $1 "," $2 "," $3 "," $4 "," $5
      if (!(key in n)) { order[++count] = key; size[key] = $7; ratio[key] = $8; metric[key] = $9
                         lo[key] = $11; hi[key] = $11 }
      n[key]++; valid[key] += $10; test[key] += $11
      if ($11 < lo[key]) lo[key] = $11; if ($11 > hi[key]) hi[key] = $11 }
    END { for (i = 1; i <= count; i++) { k = order[i]
            printf "%s,%d,%.4f,%.2f,%s,%.4f,%.4f,%.4f,%.4f\n", k, n[k], size[k], ratio[k], metric[k],
                   valid[k] / n[k], test[k] / n[k], lo[k], hi[k] } }'
}

# A markdown table of a summary: accuracy in %, perplexity as is; "mean (min-max)" over seeds.
markdown_table() {
  local summary=$1
  echo "| task | row | scheme | size (MB) | ratio | valid | test, mean (min-max over seeds) |"
  echo "|---|---|---|---|---|---|---|"
  tail -n +2 "$summary" | awk -F, '
    { scale = ($9 == "accuracy") ? 100 : 1; unit = ($9 == "accuracy") ? "%" : ""
      printf "| %s | %s | %s | %.3f | %.1fx | %.2f%s | %.2f%s (%.2f-%.2f) |\n", $2, $3, $5, $7, $8,
             scale * $10, unit, scale * $11, unit, scale * $12, scale * $13 }'
}

# Writes $1.csv, $1.summary.csv and $1.md in $OUT from a rows file.
write_results() {
  local experiment=$1 rows=$2
  collect_rows "$experiment" "$rows" >"$OUT/$experiment.csv.tmp"
  mv "$OUT/$experiment.csv.tmp" "$OUT/$experiment.csv"
  summarize_rows "$OUT/$experiment.csv" >"$OUT/$experiment.summary.csv"
  markdown_table "$OUT/$experiment.summary.csv" >"$OUT/$experiment.md"
  echo "$(basename "$0"): wrote $OUT/$experiment.csv, .summary.csv and .md" >&2
  cat "$OUT/$experiment.md"
}

# Plots with gnuplot when it is installed (Debian gnuplot-nox); the CSV files stand without it.
plot() {
  local script=$1
  shift
  if ! command -v gnuplot >/dev/null; then
    echo "$(basename "$0"): gnuplot not installed, no plot (apt-get install gnuplot-nox)" >&2
    return 0
  fi
  gnuplot -e "out='$OUT'" "$@" "$EXPERIMENTS_DIR/$script"
}
