#!/usr/bin/env bash
# Makes the large language model of docs/performance.md's model-level benchmark: the KJV LM
# architecture at d_model 1024, 4 layers, FFN 4096 (55 M parameters, 221 MB in float32), compressed
# with iPQ by the built-in plan. Its speed and memory do not depend on what the weights learned,
# so it is trained for 2 updates only and compressed without finetuning; the evaluation splits are
# cut to a few lines (the vocabulary comes from the whole training split, as in `qnoise data kjv`).
#
#   bench/make_benchmark_lm.sh [OUT_DIR]   (default build/benchmark-lm; about 5 minutes)
#   build/bench/bench_generate OUT_DIR/lm1024.ipq.qnz --threads 1
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QNOISE=${QNOISE:-$ROOT/build/qnoise}
OUT=${1:-$ROOT/build/benchmark-lm}
mkdir -p "$OUT"
if [ ! -f "$OUT/kjv/wiki.train.tokens" ]; then
  "$QNOISE" data kjv --out "$OUT/kjv.full" >/dev/null
  mkdir -p "$OUT/kjv"
  cp "$OUT/kjv.full/wiki.train.tokens" "$OUT/kjv/"
  for split in valid test; do head -n 40 "$OUT/kjv.full/wiki.$split.tokens" >"$OUT/kjv/wiki.$split.tokens"; done
  rm -rf "$OUT/kjv.full"
fi
if [ ! -f "$OUT/lm1024.pt" ]; then
  "$QNOISE" train --task lm --data "$OUT/kjv" --adaptive-input --adaptive-softmax --layers 4 --d-model 1024 \
    --heads 16 --ffn-dim 4096 --max-steps 2 --batch-size 2 --train-limit 4000 --out "$OUT/lm1024.partial.pt" --progress off >"$OUT/train.log"
  mv "$OUT/lm1024.partial.pt" "$OUT/lm1024.pt"
fi
"$QNOISE" quantize --model "$OUT/lm1024.pt" --scheme ipq --finetune-steps 0 --out "$OUT/lm1024.ipq.qnz" --progress off |
  tail -n 1 | jq -c '{file, file_bytes, float32_bytes}'
