#!/usr/bin/python3
"""Issue 24's tables from convergence.sh's finished runs: per task, quantization (iPQ, int4) and
arm, the float and quantized test metric (mean and standard error over seeds), and the paired
difference after quantization from the no-noise arm and from QAT (per seed, then mean and
standard error). A difference is called an effect only when it exceeds twice its standard error
over at least 3 seeds.

Also writes, for the plot against the training noise rate (convergence.gp), each rate's paired
difference from no noise, in float and after iPQ.

Usage: convergence_table.py FOLDER   (FOLDER/runs/<task>.<arm>.s<seed>.<scheme>.json; writes
       FOLDER/table.md and FOLDER/rates.csv)
"""
import json
import math
import os
import sys

# Each table: its title, its rows as (arm, scheme) with labels, and the rows that every other row
# is compared with, seed by seed: no noise and QAT; with fewer centroids, both QATs (the same
# model as the built-in plan's, and the one trained against this plan's codebook sizes).
IPQ_ARMS = ["none", "pq0.025", "pq0.05", "pq0.1", "pq0.2", "pq1", "ft_pq0.1"]
INT4_TRAINED_ARMS = ["int4t_1", "int4t_0.5", "int4t_0.1"]  # trained with 4-bit inputs
TABLES = [
    ("iPQ", [(arm, "ipq") for arm in IPQ_ARMS], [("none", "ipq"), ("pq1", "ipq")]),
    ("iPQ with up to 8x fewer centroids per layer",
     [(arm, "ipq_fewer") for arm in IPQ_ARMS + ["pq1_fewer"]],
     [("none", "ipq_fewer"), ("pq1", "ipq_fewer"), ("pq1_fewer", "ipq_fewer")]),
    ("int4, per-tensor weight ranges and 4-bit inputs (the paper's)",
     [("none", "int4"), ("none", "int4a4"), ("none", "int4a4mse")]
     + [(arm, scheme) for arm in INT4_TRAINED_ARMS for scheme in ["int4a4", "int4a4mse"]],
     [("none", "int4a4mse"), ("int4t_1", "int4a4")]),
]
# Labels of the rows whose name depends on the scheme, then of the arms whose name does not.
ROW_LABELS = {("none", "int4"): "no noise, Table 1's int4 (per channel, float inputs)",
              ("none", "int4a4"): "no noise, input ranges min-max",
              ("none", "int4a4mse"): "no noise, input ranges by least squared error",
              ("pq1", "ipq_fewer"): "iPQ QAT (exact noise, p = 1; the built-in plan's codebook sizes)"}
ARM_LABELS = {"none": "no noise",
              "pq1": "iPQ QAT (exact noise, p = 1)",
              "pq1_fewer": "iPQ QAT against codebooks of this plan's sizes",
              "int4t_1": "int4 QAT (weights and inputs, p = 1)",
              "ft_pq0.1": "no noise, then finetuned with Quant-Noise p = 0.1 (last 2 epochs; LM: 1)"}
# Short names of the baselines in the column heads, where "no noise" or "QAT" is ambiguous.
COMPARED_LABELS = {("pq1", "ipq_fewer"): "QAT against the built-in plan's codebooks",
                   ("pq1_fewer", "ipq_fewer"): "QAT against this plan's codebooks"}
TASKS = {"image": ("accuracy", True), "lm": ("ppl", False)}  # metric, higher is better


def label(row):
    arm, scheme = row
    if row in ROW_LABELS:
        return ROW_LABELS[row]
    if scheme == "int4a4mse":  # a model trained with 4-bit inputs, its ranges replaced
        return label((arm, "int4a4")) + ", input ranges recalibrated by least squared error"
    if arm in ARM_LABELS:
        return ARM_LABELS[arm]
    rate = arm[2:] if arm.startswith("pq") else arm.split("_", 1)[1]
    return f"Quant-Noise p = {rate}"


def compared_label(row):
    return COMPARED_LABELS.get(row, "no noise" if row[0] == "none" else "QAT")


def mean_se(values):
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def show(value, metric):
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.2f}"


def show_se(mean, se, metric, signed=False):
    # Accuracies in %, their differences in points.
    scale, unit = (100, (" pt" if signed else "%")) if metric == "accuracy" else (1, "")
    sign = "+" if signed else ""
    text = f"{scale * mean:{sign}.2f}"
    return text + (f" ± {scale * se:.2f}" if not math.isnan(se) else "") + unit


def load_runs(folder):
    """{(task, arm, seed, scheme): the quantize JSON line} from FOLDER/runs/<task>.<arm>.s<seed>.<scheme>.json."""
    runs = {}
    for name in sorted(os.listdir(os.path.join(folder, "runs"))):
        if not name.endswith(".json"):
            continue
        parts = name[:-len(".json")].split(".")
        seed_at = max(i for i, part in enumerate(parts) if part[:1] == "s" and part[1:].isdigit())
        task, arm, seed, scheme = parts[0], ".".join(parts[1:seed_at]), int(parts[seed_at][1:]), ".".join(parts[seed_at + 1:])
        with open(os.path.join(folder, "runs", name)) as f:
            runs[(task, arm, seed, scheme)] = json.loads(f.readline())
    return runs


def verdict(diffs, better_is_higher):
    if len(diffs) < 3:
        return f"{len(diffs)} seed(s): too few to tell"
    mean, se = mean_se(diffs)
    if abs(mean) <= 2 * se:
        return "no effect beyond 2 SE"
    return "better" if (mean > 0) == better_is_higher else "worse"


def task_table(task, title, table_rows, baselines, runs):
    metric, higher = TASKS[task]
    seeds_of = {row: sorted(s for (t, a, s, c) in runs if t == task and (a, c) == row) for row in table_rows}
    if not any(seeds_of.values()):
        return []
    scheme = table_rows[-1][1]
    some = next(r for (t, _, _, c), r in runs.items() if t == task and c == scheme)
    test = lambda row, s, part: runs[(task, row[0], s, row[1])][part]["test"][metric]
    rows = [f"#### {task}: {title} (test {metric}; {'higher' if higher else 'lower'} is better; file "
            f"{some['file_bytes'] / 1e6:.3f} MB, {some['float32_bytes'] / some['file_bytes']:.1f}x smaller than "
            f"float32)", ""]
    head = ["arm", "seeds", "float", "quantized"] + [f"quantized minus {compared_label(b)} (paired)" for b in baselines]
    rows += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table_rows:
        seeds = seeds_of[row]
        if not seeds:
            rows.append(f"| {label(row)} | 0 |" + " |" * (len(head) - 2))
            continue
        cells = [label(row), ",".join(map(str, seeds)), show_se(*mean_se([test(row, s, "float") for s in seeds]), metric),
                 show_se(*mean_se([test(row, s, "compressed") for s in seeds]), metric)]
        for base in baselines:
            paired = [s for s in seeds if (task, base[0], s, base[1]) in runs]
            if row == base or not paired:
                cells.append("")
                continue
            diffs = [test(row, s, "compressed") - test(base, s, "compressed") for s in paired]
            per_seed = ", ".join(f"{(100 if metric == 'accuracy' else 1) * d:+.2f}" for d in diffs)
            cells.append(f"{show_se(*mean_se(diffs), metric, signed=True)} ({per_seed}): {verdict(diffs, higher)}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows + [""]


# The arms trained with noise from the start, by rate (1: QAT), for the plot against the rate.
RATE_ARMS = [("pq0.025", 0.025), ("pq0.05", 0.05), ("pq0.1", 0.1), ("pq0.2", 0.2), ("pq1", 1.0)]
RATES_HEADER = "task,scheme,rate,seeds,float_minus_none,float_se,quantized_minus_none,quantized_se"


def rate_rows(runs):
    """CSV lines of RATES_HEADER, one per task, iPQ plan (scheme) and arm of RATE_ARMS with at
    least 2 seeds paired with the no-noise arm: the paired difference from no noise, float and
    after iPQ, mean and standard error (accuracy in points)."""
    lines = []
    for task, (metric, _) in TASKS.items():
        scale = 100 if metric == "accuracy" else 1
        for scheme in ("ipq", "ipq_fewer"):
            for arm, rate in RATE_ARMS:
                seeds = sorted(s for (t, a, s, c) in runs
                               if (t, a, c) == (task, arm, scheme) and (task, "none", s, scheme) in runs)
                if len(seeds) < 2:
                    continue
                cells = []
                for part in ("float", "compressed"):
                    test = lambda a, s: runs[(task, a, s, scheme)][part]["test"][metric]
                    mean, se = mean_se([scale * (test(arm, s) - test("none", s)) for s in seeds])
                    cells += [f"{mean:.4f}", f"{se:.4f}"]
                lines.append(",".join([task, scheme, str(rate), str(len(seeds))] + cells))
    return lines


def write_file(folder, name, text):
    with open(os.path.join(folder, name + ".tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(folder, name + ".tmp"), os.path.join(folder, name))


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "docs/results/convergence"
    runs = load_runs(folder)
    lines = []
    for task in TASKS:
        for title, table_rows, baselines in TABLES:
            lines += task_table(task, title, table_rows, baselines, runs)
    text = "\n".join(lines) + "\n"
    write_file(folder, "table.md", text)
    write_file(folder, "rates.csv", "\n".join([RATES_HEADER] + rate_rows(runs)) + "\n")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
