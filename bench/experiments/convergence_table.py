#!/usr/bin/python3
"""Issue 24's table from convergence.sh's finished runs: per task and arm, the float and iPQ test
metric (mean and standard error over seeds), and per noise arm the paired difference from the
no-noise arm and from QAT after iPQ (per seed, then mean and standard error). A difference is
called an effect only when it exceeds twice its standard error over at least 3 seeds.

Usage: convergence_table.py FOLDER   (FOLDER/runs/<task>.<arm>.s<seed>.ipq.json; writes FOLDER/table.md)
"""
import json
import math
import os
import sys

ARMS = ["none", "pq0.025", "pq0.05", "pq0.1", "pq0.2", "pq1"]
LABELS = {"none": "no noise", "pq1": "iPQ QAT (exact noise, p = 1)"}
TASKS = {"image": ("accuracy", True), "lm": ("ppl", False)}  # metric, higher is better


def label(arm):
    return LABELS.get(arm, f"Quant-Noise p = {arm[2:]}")


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
    runs = {}
    for name in sorted(os.listdir(os.path.join(folder, "runs"))):
        parts = name.split(".")
        if not name.endswith(".ipq.json"):
            continue
        task, arm, seed = parts[0], ".".join(parts[1:-3]), int(parts[-3][1:])
        with open(os.path.join(folder, "runs", name)) as f:
            runs[(task, arm, seed)] = json.loads(f.readline())
    return runs


def verdict(diffs, better_is_higher):
    if len(diffs) < 3:
        return f"{len(diffs)} seed(s): too few to tell"
    mean, se = mean_se(diffs)
    if abs(mean) <= 2 * se:
        return "no effect beyond 2 SE"
    return "better" if (mean > 0) == better_is_higher else "worse"


def task_table(task, runs):
    metric, higher = TASKS[task]
    rows = []
    seeds_of = {arm: sorted(s for (t, a, s) in runs if t == task and a == arm) for arm in ARMS}
    if not any(seeds_of.values()):
        return []
    some = next(r for (t, _, _), r in runs.items() if t == task)
    rows.append(f"### {task} (test {metric}; {'higher' if higher else 'lower'} is better; iPQ file "
                f"{some['file_bytes'] / 1e6:.3f} MB, {some['float32_bytes'] / some['file_bytes']:.1f}x smaller "
                f"than float32)")
    rows.append("")
    rows.append("| arm | seeds | float | after iPQ | iPQ minus no noise (paired) | iPQ minus QAT (paired) |")
    rows.append("|---|---|---|---|---|---|")
    for arm in ARMS:
        seeds = seeds_of[arm]
        if not seeds:
            rows.append(f"| {label(arm)} | 0 | | | | |")
            continue
        test = lambda s, part: runs[(task, arm, s)][part]["test"][metric]
        floats = [test(s, "float") for s in seeds]
        ipqs = [test(s, "compressed") for s in seeds]
        cells = [label(arm), ",".join(map(str, seeds)), show_se(*mean_se(floats), metric),
                 show_se(*mean_se(ipqs), metric)]
        for base in ("none", "pq1"):
            paired = [s for s in seeds if (task, base, s) in runs]
            if arm == base or not paired:
                cells.append("")
                continue
            diffs = [test(s, "compressed") - runs[(task, base, s)]["compressed"]["test"][metric] for s in paired]
            per_seed = ", ".join(show(d, metric) if metric == "ppl" else f"{100 * d:+.2f}" for d in diffs)
            cells.append(f"{show_se(*mean_se(diffs), metric, signed=True)} ({per_seed}): "
                         f"{verdict(diffs, higher)}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows + [""]


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "docs/results/convergence"
    runs = load_runs(folder)
    lines = []
    for task in TASKS:
        lines += task_table(task, runs)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(folder, "table.md.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(folder, "table.md.tmp"), os.path.join(folder, "table.md"))
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
