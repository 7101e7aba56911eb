"""What Quant-Noise costs a training step of a user's PyTorch model: the same step (forward, backward,
Adam) with and without qnoise.QuantNoise on every layer (pq noise, p = 0.1), interleaved, median of
--repeats timings each, on the example LM and torchvision's ResNet-18. Prints the ratio.

    /usr/bin/python3 bench/python/bench_noise_step.py
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "examples" / "python"))
import qnoise  # noqa: E402
from lm_model import TransformerLm  # noqa: E402


def lm_case():
    model = TransformerLm(4096, 256, 4, 1024, 2, 64)
    ids = torch.randint(0, 4096, (32, 64))
    return model, lambda: torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()), \
        [("*", 0.1, 8)]


def resnet_case():
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(1, 64, 3, padding=1, bias=False)
    images, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    return model, lambda: torch.nn.functional.cross_entropy(model(images), labels), \
        [("conv1", 0.1, 9), ("*conv*", 0.1, 9), ("*", 0.1, 8)]


def step_seconds(model, loss_of, optimizer):
    start = time.perf_counter()
    loss = loss_of()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch's (and qnoise's kernels') threads; default: every core")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch threads {torch.get_num_threads()}")
    print("| model | plain step | Quant-Noise step | ratio |")
    print("|---|---|---|---|")
    for name, case in (("TransformerLm d=256, 2 layers, batch 32x64", lm_case),
                       ("ResNet-18, batch 64 of 28x28", resnet_case)):
        model, loss_of, rules = case()
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), 1e-4)
        noise = qnoise.QuantNoise(model, rules, attach=False)
        plain, noisy = [], []
        for i in range(args.repeats + 2):
            t_plain = step_seconds(model, loss_of, optimizer)
            with noise:
                t_noisy = step_seconds(model, loss_of, optimizer)
            if i >= 2:  # warm-up
                plain.append(t_plain)
                noisy.append(t_noisy)
        p, n = statistics.median(plain), statistics.median(noisy)
        print(f"| {name} | {p * 1000:.1f} ms | {n * 1000:.1f} ms | {n / p:.3f} |")


if __name__ == "__main__":
    main()
