#!/usr/bin/env bash
# The paper's Figure 3: the metric after quantization against the Quant-Noise rate p used in
# training, for iPQ (noise: PQ blocks dropped) and int8 (noise: int8 fake quantization), on
# Fashion-MNIST (EfficientNet-style CNN), the KJV language model and the KJV next-verse pairs
# (encoder classifier; its rates beyond Table 1's add models to table1.sh's). Writes figure3.csv,
# figure3.summary.csv, figure3.md and figure3.png in the results folder (docs/results.md).
source "$(dirname "$0")/common.sh"
source "$EXPERIMENTS_DIR/sweep.sh"
parse_args "$@"

sweep_jobs figure3 image lm pairs >"$OUT/figure3.jobs"
run_jobs "$OUT/figure3.jobs"
sweep_rows figure3 image lm pairs >"$OUT/figure3.rows"
write_results figure3 "$OUT/figure3.rows"
plot figure3.gp
