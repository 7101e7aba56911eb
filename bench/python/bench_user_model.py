"""A user's PyTorch model (examples/python/lm_model.py) against its compressed self, in one process:
tokens per second at batch 1 and 64 (one position per sequence: a decoding step's Linear work),
and the bytes its weights take in memory (float parameters vs qnoise's packed layers plus what
stays float). Writes a Markdown table (--markdown FILE).

    OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/python/bench_user_model.py --markdown docs/python_bench.md
"""
import argparse
import os
import copy
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "examples" / "python"))
import qnoise  # noqa: E402
from lm_model import TransformerLm  # noqa: E402


def weight_bytes(model):
    """Bytes of the model's tensors in memory: float parameters and buffers, packed layers' kernels."""
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    total += sum(m.resident_bytes() for m in model.modules() if isinstance(m, qnoise.PackedLayer))
    return total


def tokens_per_second(model, batch, seconds):
    ids = torch.randint(0, 1000, (batch, 1))
    with torch.no_grad():
        for _ in range(5):
            model(ids)
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(ids)
            calls += 1
        return calls * batch / (time.perf_counter() - start)


PLANS = {
    "iPQ (d=8, K=256)": {"stages": [{"name": "ffn", "layers": ["*.fc*"], "block_size": 8},
                                    {"name": "attention", "layers": ["*.attn.*"], "block_size": 8},
                                    {"name": "ends", "layers": ["embed", "out"], "block_size": 8}]},
    "int8": "int8",
    "int4": "int4",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--markdown", help="write the table here too")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch's (and qnoise's kernels') threads; default: every core")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    float_model = TransformerLm(args.vocab, args.dim, 8, 4 * args.dim, args.layers).eval()
    rows = [("float32", float_model)]
    with tempfile.TemporaryDirectory() as folder:
        for name, plan in PLANS.items():
            model = copy.deepcopy(float_model)
            qnoise.quantize(model, plan)
            path = Path(folder) / "model.qnz"
            qnoise.save(model, path)
            loaded = qnoise.load(path, TransformerLm(args.vocab, args.dim, 8, 4 * args.dim, args.layers))
            rows.append((name, loaded))
        base = {}
        lines = [f"TransformerLm d={args.dim}, {args.layers} layers, vocab {args.vocab}, "
                 f"{sum(p.numel() for p in float_model.parameters()) / 1e6:.1f} M parameters; "
                 f"torch threads {torch.get_num_threads()}",
                 "",
                 "| model | batch 1 tokens/s | speed-up | batch 64 tokens/s | speed-up | weights in memory | ratio |",
                 "|---|---|---|---|---|---|---|"]
        for name, model in rows:
            t1 = tokens_per_second(model, 1, args.seconds)
            t64 = tokens_per_second(model, 64, args.seconds)
            memory = weight_bytes(model)
            base.setdefault("t1", t1), base.setdefault("t64", t64), base.setdefault("memory", memory)
            lines.append(f"| {name} | {t1:.0f} | {t1 / base['t1']:.2f}x | {t64:.0f} | {t64 / base['t64']:.2f}x | "
                         f"{memory / 2**20:.1f} MiB | {memory / base['memory']:.3f} |")
    lines.append("")
    lines.append(f"peak resident set of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
