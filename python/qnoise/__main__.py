"""`python3 -m qnoise info FILE.qnz`: every tensor's scheme, shape, bits per weight and bytes."""
import argparse
import json
import sys

from .errors import QnoiseError
from .io import info


def print_info(path):
    contents = info(path)
    rows = [(name, t["scheme"], "x".join(map(str, t["shape"])), f"{t['bits_per_weight']:.2f}", str(t["bytes"]))
            for name, t in contents["tensors"].items()]
    header = ("tensor", "scheme", "shape", "bits/weight", "bytes")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    stored, floats = contents["stored_bytes"], contents["float_bytes"]
    print(f"tensors: {stored} bytes, {floats / max(stored, 1):.2f}x smaller than float32 ({floats} bytes)")
    if contents["metadata"]:
        print("metadata: " + json.dumps(contents["metadata"]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m qnoise", description="qnoise from Python")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="what a .qnz file holds").add_argument("file")
    args = parser.parse_args(argv)
    try:
        print_info(args.file)
    except QnoiseError as error:
        print(f"python3 -m qnoise {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
