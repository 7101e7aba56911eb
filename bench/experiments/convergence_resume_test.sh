#!/usr/bin/env bash
# convergence.sh's bookkeeping, with a stand-in for qnoise (ctest): an interrupted training whose
# evaluation log was published elsewhere resumes instead of counting as finished, the published
# log keeps one evaluation per step, and a finished model is not trained again.
set -euo pipefail
dir=${1:?usage: convergence_resume_test.sh WORK_DIR}
rm -rf "$dir"
mkdir -p "$dir"/out/{models,logs} "$dir"/published/logs
export CALLS="$dir/calls" CONVERGENCE_PUBLISHED="$dir/published" QNOISE="$dir/qnoise"
fail() { echo "convergence_resume_test: $*" >&2; exit 1; }

# The stand-in logs its arguments. "train" continues from the step stored in --out (with --resume),
# prints an evaluation at steps 10 and 20 after it and stores step 20; "quantize" prints a result.
cat >"$QNOISE" <<'FAKE'
#!/usr/bin/env bash
echo "$*" >>"$CALLS"
out="" resume=0 args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in --out) out=${args[$((i + 1))]} ;; --resume) resume=1 ;; esac
done
case " $* " in
  *" train "*)
    start=0
    [ "$resume" = 1 ] && start=$(cat "$out")
    for step in 10 20; do
      [ "$step" -gt "$start" ] && echo "{\"event\":\"eval\",\"step\":$step,\"run\":\"resumed from $start\"}"
    done
    echo 20 >"$out" ;;
  *" quantize "*)
    echo '{"event":"quantized","metric":"accuracy","file_bytes":1000,"float32_bytes":4000,"float":{"valid":{"accuracy":0.9},"test":{"accuracy":0.9}},"compressed":{"valid":{"accuracy":0.8},"test":{"accuracy":0.8}}}' ;;
esac
FAKE
chmod +x "$QNOISE"

run() {
  : >"$CALLS"
  bash "$(dirname "$0")/convergence.sh" --out "$dir/out" --jobs 1 --seeds 1 --tasks image --arms none \
    --int4-arms "" >"$dir/run.log" 2>&1 || { cat "$dir/run.log"; fail "convergence.sh failed"; }
}

# Interrupted at step 5, after the evaluation at step 10 was logged; its log published elsewhere.
id=image.none.s1
echo 5 >"$dir/out/models/$id.partial.pt"
echo '{"event":"eval","step":10,"run":"interrupted"}' >"$dir/out/logs/$id.train.jsonl"
cp "$dir/out/logs/$id.train.jsonl" "$dir/published/logs/"
run
grep -q -- "train .*--resume .*--out $dir/out/models/$id.partial.pt" "$CALLS" || fail "training did not resume: $(cat "$CALLS")"
[ -f "$dir/out/models/$id.pt" ] && [ ! -e "$dir/out/models/$id.partial.pt" ] || fail "the finished model was not renamed"
expected='{"event":"eval","step":10,"run":"resumed from 5"}
{"event":"eval","step":20,"run":"resumed from 5"}'
[ "$(cat "$dir/published/logs/$id.train.jsonl")" = "$expected" ] ||
  fail "published log: $(cat "$dir/published/logs/$id.train.jsonl")"
[ "$(grep -c ' quantize ' "$CALLS")" = 2 ] || fail "expected two iPQ runs (both plans): $(cat "$CALLS")"

# A finished model is compressed again when its result is missing, and not trained again.
rm "$dir/published/runs/$id.ipq.json"
run
! grep -q ' train ' "$CALLS" || fail "a finished model was trained again: $(cat "$CALLS")"
[ "$(grep -c ' quantize ' "$CALLS")" = 1 ] || fail "expected one iPQ run: $(cat "$CALLS")"
echo "convergence_resume_test: passed"
