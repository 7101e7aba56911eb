"""bench/experiments/convergence_table.py, which writes docs/results.md's convergence tables: paired
differences per seed, their mean and standard error, and the 2-standard-error rule, on runs
whose answers are known."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "experiments" / "convergence_table.py"
spec = importlib.util.spec_from_file_location("convergence_table", SCRIPT)
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)


def write_run(folder, task, arm, seed, scheme, float_value, quantized_value):
    metric = "accuracy" if task == "image" else "ppl"
    line = {"event": "quantized", "file_bytes": 1000, "float32_bytes": 4000, "metric": metric,
            "float": {"test": {metric: float_value}}, "compressed": {"test": {metric: quantized_value}}}
    (folder / "runs").mkdir(exist_ok=True)
    (folder / "runs" / f"{task}.{arm}.s{seed}.{scheme}.json").write_text(json.dumps(line) + "\n")


def test_mean_and_standard_error_are_exact():
    mean, se = table.mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert se == pytest.approx(math.sqrt(1.0 / 3.0))
    assert math.isnan(table.mean_se([4.0])[1])


def test_verdicts_follow_the_two_standard_error_rule():
    assert table.verdict([0.01, 0.01, 0.012], True) == "better"
    assert table.verdict([0.01, 0.01, 0.012], False) == "worse"  # perplexity: higher is worse
    assert table.verdict([0.005, -0.005, 0.003], True) == "no effect beyond 2 SE"
    assert table.verdict([0.01, 0.01], True) == "2 seed(s): too few to tell"


def test_rows_pair_seeds_with_the_baselines(tmp_path):
    for seed, base in [(1, 0.80), (2, 0.81), (3, 0.82)]:
        write_run(tmp_path, "image", "none", seed, "ipq", 0.9, base)
        write_run(tmp_path, "image", "pq0.1", seed, "ipq", 0.88, base + 0.01)  # +1 point on every seed
        write_run(tmp_path, "image", "pq1", seed, "ipq", 0.87, base + [0.005, -0.005, 0.003][seed - 1])
    write_run(tmp_path, "image", "pq0.2", 1, "ipq", 0.86, 0.79)  # one seed only: unpaired beyond it
    write_run(tmp_path, "image", "pq0.2", 2, "ipq", 0.86, 0.80)
    for seed in (1, 2, 3):
        write_run(tmp_path, "lm", "none", seed, "ipq", 200.0, 210.0 + seed)
        write_run(tmp_path, "lm", "pq0.1", seed, "ipq", 205.0, 212.0 + seed)  # 2 worse on every seed
    rows = table.task_table("image", "iPQ", table.TABLES[0][1], table.TABLES[0][2], table.load_runs(tmp_path))
    text = "\n".join(rows)
    assert "| Quant-Noise p = 0.1 | 1,2,3 | 88.00 ± 0.00% | 82.00 ± 0.58% | +1.00 ± 0.00 pt (+1.00, +1.00, +1.00): better |" in text
    assert "| iPQ QAT (exact noise, p = 1) | 1,2,3 |" in text
    assert "+0.10 ± 0.31 pt (+0.50, -0.50, +0.30): no effect beyond 2 SE" in text
    assert "| Quant-Noise p = 0.2 | 1,2 |" in text and "2 seed(s): too few to tell" in text
    assert "| Quant-Noise p = 0.025 | 0 |" in text  # no runs: an empty row
    assert "4.0x smaller than float32" in text
    lm = "\n".join(table.task_table("lm", "iPQ", table.TABLES[0][1], table.TABLES[0][2], table.load_runs(tmp_path)))
    assert "| Quant-Noise p = 0.1 | 1,2,3 | 205.00 ± 0.00 | 214.00 ± 0.58 | +2.00 ± 0.00 (+2.00, +2.00, +2.00): worse |" in lm


def test_fewer_centroid_rows_are_compared_with_both_qats(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, "lm", "none", seed, "ipq_fewer", 80.0, 105.0)
        write_run(tmp_path, "lm", "pq0.1", seed, "ipq_fewer", 87.0, 101.0 + seed)
        write_run(tmp_path, "lm", "pq1", seed, "ipq_fewer", 590.0, 103.0)
        write_run(tmp_path, "lm", "pq1_fewer", seed, "ipq_fewer", 9e4, 120.0)
    title, rows, baselines = table.TABLES[1]
    text = "\n".join(table.task_table("lm", title, rows, baselines, table.load_runs(tmp_path)))
    assert ("| quantized minus no noise (paired) | quantized minus QAT against the built-in plan's codebooks "
            "(paired) | quantized minus QAT against this plan's codebooks (paired) |") in text
    assert ("| Quant-Noise p = 0.1 | 1,2,3 | 87.00 ± 0.00 | 103.00 ± 0.58 | -2.00 ± 0.58 (-3.00, -2.00, -1.00): "
            "better | +0.00 ± 0.58 (-1.00, +0.00, +1.00): no effect beyond 2 SE | -17.00 ± 0.58 (-18.00, -17.00, "
            "-16.00): better |") in text


def test_int4_rows_of_trained_ranges_and_recalibrated_ones(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, "lm", "none", seed, "int4a4mse", 80.0, 85.0)
        write_run(tmp_path, "lm", "int4t_1", seed, "int4a4", 84.0, 86.0)
        write_run(tmp_path, "lm", "int4t_1", seed, "int4a4mse", 84.0, 84.0 + seed)
    title, rows, baselines = table.TABLES[2]
    text = "\n".join(table.task_table("lm", title, rows, baselines, table.load_runs(tmp_path)))
    assert "| int4 QAT (weights and inputs, p = 1) | 1,2,3 | 84.00 ± 0.00 | 86.00 ± 0.00 | +1.00 ± 0.00" in text
    assert ("| int4 QAT (weights and inputs, p = 1), input ranges recalibrated by least squared error | 1,2,3 | "
            "84.00 ± 0.00 | 86.00 ± 0.58 | +1.00 ± 0.58 (+0.00, +1.00, +2.00): no effect beyond 2 SE | "
            "+0.00 ± 0.58 (-1.00, +0.00, +1.00): no effect beyond 2 SE |") in text
    assert "| Quant-Noise p = 0.5, input ranges recalibrated by least squared error | 0 |" in text


def test_rate_rows_are_paired_differences_from_no_noise(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, "image", "none", seed, "ipq", 0.90, 0.80 + 0.01 * seed)
        write_run(tmp_path, "image", "pq0.1", seed, "ipq", 0.89, 0.81 + 0.01 * seed)  # -1 float, +1 after iPQ
        write_run(tmp_path, "image", "pq1", seed, "ipq", 0.88 + 0.01 * seed, 0.80 + 0.01 * seed)
        write_run(tmp_path, "image", "none", seed, "ipq_fewer", 0.90, 0.70)
        write_run(tmp_path, "image", "pq0.1", seed, "ipq_fewer", 0.89, 0.70 + 0.01 * seed)
    write_run(tmp_path, "image", "pq0.2", 1, "ipq", 0.85, 0.75)  # one seed: no standard error, no row
    for seed in (1, 2):
        write_run(tmp_path, "lm", "none", seed, "ipq", 80.0, 86.0)
        write_run(tmp_path, "lm", "pq0.05", seed, "ipq", 82.0 + seed, 87.0)
    write_run(tmp_path, "lm", "pq0.2", 3, "ipq", 90.0, 90.0)  # no no-noise model of seed 3 to pair with
    rows = [row.split(",") for row in table.rate_rows(table.load_runs(tmp_path))]
    assert [row[:4] for row in rows] == [["image", "ipq", "0.1", "3"], ["image", "ipq", "1.0", "3"],
                                         ["image", "ipq_fewer", "0.1", "3"], ["lm", "ipq", "0.05", "2"]]
    assert [float(v) for v in rows[0][4:]] == pytest.approx([-1.0, 0.0, 1.0, 0.0])
    assert [float(v) for v in rows[1][4:]] == pytest.approx([0.0, math.sqrt(1.0 / 3.0), 0.0, 0.0], abs=1e-4)
    assert [float(v) for v in rows[2][4:]] == pytest.approx([-1.0, 0.0, 2.0, math.sqrt(1.0 / 3.0)], abs=1e-4)
    assert [float(v) for v in rows[3][4:]] == pytest.approx([3.5, 0.5, 1.0, 0.0])
