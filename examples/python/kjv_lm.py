"""Example (b): a Transformer LM written in plain PyTorch (lm_model.py), trained on the King James
Bible (Debian's bible-kjv) with Quant-Noise in an ordinary PyTorch loop, then compressed to int8
and int4 with qnoise, saved, reloaded onto qnoise's kernels; perplexity and file size printed.

    /usr/bin/python3 examples/python/kjv_lm.py --steps 300
"""
import argparse
import collections
import contextlib
import copy
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import qnoise  # noqa: E402
from lm_model import TransformerLm  # noqa: E402


def kjv_words():
    text = subprocess.run(["bible", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    # Verse references ("Genesis 1:1") start each verse; the words are what follows.
    return [w for line in text.splitlines() for w in line.split()[2:]]


def corpus(vocab_size):
    words = kjv_words()
    common = [w for w, _ in collections.Counter(words).most_common(vocab_size - 1)]
    index = {w: i + 1 for i, w in enumerate(common)}  # 0: any other word
    ids = torch.tensor([index.get(w, 0) for w in words])
    split = int(len(ids) * 0.95)
    return ids[:split], ids[split:]


def batches(ids, batch, context, generator):
    while True:
        starts = torch.randint(0, len(ids) - context - 1, (batch,), generator=generator)
        x = torch.stack([ids[s:s + context] for s in starts])
        y = torch.stack([ids[s + 1:s + context + 1] for s in starts])
        yield x, y


def perplexity(model, ids, context, limit=64):
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, min(len(ids) - context - 1, limit * context), context):
            x = ids[start:start + context].unsqueeze(0)
            y = ids[start + 1:start + context + 1].unsqueeze(0)
            logits = model(x)
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    return math.exp(total / count)


def train(model, data, steps, lr):
    optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad), lr=lr)
    model.train()
    for _ in range(steps):
        x, y = next(data)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.05, help="Quant-Noise rate (pq, blocks of 8)")
    args = parser.parse_args()
    torch.manual_seed(0)
    train_ids, valid_ids = corpus(args.vocab)
    data = batches(train_ids, 32, args.context, torch.Generator().manual_seed(0))

    def make():
        return TransformerLm(args.vocab, args.dim, 4, 4 * args.dim, 2, args.context)

    model = make()
    start = time.time()
    with qnoise.QuantNoise(model, [("*", args.noise, 8)]) if args.noise > 0 else contextlib.nullcontext():
        loss = train(model, data, args.steps, 1e-3)
    print(f"trained {args.steps} steps with Quant-Noise p={args.noise} in {time.time() - start:.0f} s, "
          f"last loss {loss:.3f}")
    results = [("float32", perplexity(model, valid_ids, args.context),
                4 * sum(p.numel() for p in model.parameters()))]
    with tempfile.TemporaryDirectory() as folder:
        for scheme in ("int8", "int4"):
            compressed = copy.deepcopy(model)
            qnoise.quantize(compressed, scheme)
            path = Path(folder) / f"kjv_{scheme}.qnz"
            size = qnoise.save(compressed, path)
            served = qnoise.load(path, make())
            results.append((scheme, perplexity(served, valid_ids, args.context), size))
    print(f"{'model':8} {'valid ppl':>10} {'bytes':>10} {'smaller':>8}")
    for name, ppl, size in results:
        print(f"{name:8} {ppl:10.2f} {size:10d} {results[0][2] / size:7.2f}x")


if __name__ == "__main__":
    main()
