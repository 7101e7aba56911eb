#!/usr/bin/python3
"""Feeds the built `qnoise` program the hostile inputs of docs/reliability.md and prints the table:
per class, the cases tried and how each ended. A clean error is exit status 1 with one
"qnoise: error:" line; a crash is a signal (status > 128) or a sanitizer report; a hang is a run
past the timeout; a wrong answer is a run that succeeded on input it should have refused.

    scripts/reliability_probe.py [--qnoise build/qnoise] [--work /tmp/qnoise-probe]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import zlib

TIMEOUT_S = 120


def run(qnoise, args, cwd):
    try:
        done = subprocess.run([qnoise] + args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "hang", ""
    out = done.stdout + done.stderr
    if done.returncode < 0 or done.returncode > 128 or "Sanitizer" in out:
        return "crash", out
    if done.returncode == 1 and "qnoise: error:" in out:
        return "clean", out
    if done.returncode == 0:
        return "accepted", out
    return "crash", out  # any other status: not a handled error


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_raw(path, header_text, body):
    raw = header_text.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + body)


def write_safetensors(path, header, body):
    write_raw(path, json.dumps(header, separators=(",", ":")), body)


def rechecksum(header, body):
    """Recomputes the CRC-32s so that a change reaches the checks behind them."""
    meta = header["__metadata__"]
    sums = {}
    for name, entry in header.items():
        if name != "__metadata__":
            begin, end = entry["data_offsets"]
            sums[name] = zlib.crc32(body[begin:end])
    meta["crc32"] = json.dumps(sums, separators=(",", ":"))


def main():
    parser = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--qnoise", default=os.path.join(root, "build", "qnoise"))
    parser.add_argument("--work", default="/tmp/qnoise-probe")
    a = parser.parse_args()
    qnoise, work = os.path.abspath(a.qnoise), a.work
    os.makedirs(work, exist_ok=True)
    small = ["--threads", "1", "train", "--task", "image", "--arch", "small-cnn", "--channels", "8",
             "--train-limit", "256", "--valid-size", "100", "--batch-size", "64", "--progress", "off"]
    model = os.path.join(work, "model.pt")
    if not os.path.exists(model):
        subprocess.run([qnoise] + small + ["--max-steps", "2", "--out", model], check=True, capture_output=True)
    good = os.path.join(work, "model.qnz")
    subprocess.run([qnoise, "quantize", "--model", model, "--scheme", "int8", "--out", good], check=True,
                   capture_output=True)
    header, body = read_safetensors(good)
    rows = []  # (class, [outcome, ...], outcomes that are right)

    def case_file(name, header_text=None, header_obj=None, data=None):
        path = os.path.join(work, name + ".qnz")
        if header_obj is not None:
            write_safetensors(path, header_obj, body if data is None else data)
        else:
            write_raw(path, header_text, body if data is None else data)
        return path

    # 1. Deeply nested or duplicated JSON in a .qnz header, its metadata and --config.
    outcomes = []
    deep = "[" * 75000 + "]" * 75000
    for command in (["info"], ["eval"]):
        path = case_file("deep_header", header_text='{"__metadata__":' + deep + "}")
        outcomes.append(run(qnoise, command + [path], work)[0])
        h = json.loads(json.dumps(header))
        h["__metadata__"]["task"] = deep
        outcomes.append(run(qnoise, command + [case_file("deep_task", header_obj=h)], work)[0])
        text = json.dumps(header, separators=(",", ":"))
        dup = text[:-1] + ',"__metadata__":{"format":"qnoise"}}'
        outcomes.append(run(qnoise, command + [case_file("duplicate", header_text=dup)], work)[0])
    config = os.path.join(work, "deep.json")
    open(config, "w").write('{"task":"image","model":' + "{\"a\":" * 75000 + "1" + "}" * 75001)
    outcomes.append(run(qnoise, ["train", "--config", config, "--out", os.path.join(work, "x.pt")], work)[0])
    rows.append(("JSON nested 75,000 deep / duplicate keys (.qnz header, metadata, --config)", outcomes))

    # 2. Architectures from metadata beyond sane bounds, and impossible shapes.
    outcomes = []
    for key, value in (("depth_multiplier", 1e4), ("width_multiplier", 1e4), ("channels", 10 ** 6)):
        h = json.loads(json.dumps(header))
        task = json.loads(h["__metadata__"]["task"])
        task["model"][key] = value
        h["__metadata__"]["task"] = json.dumps(task)
        rechecksum(h, body)
        outcomes.append(run(qnoise, ["eval", case_file("arch_" + key, header_obj=h)], work)[0])
    h = json.loads(json.dumps(header))
    tensors = json.loads(h["__metadata__"]["tensors"])
    first = next(iter(tensors))
    tensors[first]["shape"] = [1, 274177, 67280421310721]
    h["__metadata__"]["tensors"] = json.dumps(tensors)
    rechecksum(h, body)
    outcomes.append(run(qnoise, ["info", case_file("shape_wrap", header_obj=h)], work)[0])
    rows.append(("architecture / shapes from metadata out of bounds", outcomes))

    # 3. Damaged bytes: every 97th data byte flipped; NaN in a float tensor (checksum fixed).
    outcomes = []
    for i in range(0, len(body), 97):
        flipped = bytearray(body)
        flipped[i] ^= 0x5A
        outcomes.append(run(qnoise, ["info", case_file("flip", header_obj=header, data=bytes(flipped))], work)[0])
    rows.append(("one data byte flipped (every 97th of %d)" % len(body), outcomes))
    outcomes = []
    for name, entry in header.items():
        if name != "__metadata__" and entry["dtype"] == "F32" and entry["data_offsets"][1] > entry["data_offsets"][0]:
            h = json.loads(json.dumps(header))
            nan = bytearray(body)
            begin = entry["data_offsets"][0]
            nan[begin:begin + 4] = struct.pack("<f", float("nan"))
            rechecksum(h, bytes(nan))
            outcomes.append(run(qnoise, ["info", case_file("nan", header_obj=h, data=bytes(nan))], work)[0])
    rows.append(("NaN in a stored float tensor, checksum valid", outcomes))
    outcomes = []
    full = open(good, "rb").read()
    for length in range(0, len(full), max(1, len(full) // 60)):
        path = os.path.join(work, "cut.qnz")
        open(path, "wb").write(full[:length])
        outcomes.append(run(qnoise, ["info", path], work)[0])
    rows.append(("truncated .qnz (60 lengths)", outcomes))

    # 4. Numbers on the command line.
    outcomes = []
    for flag, value in (("--dropout", "nan"), ("--lr", "inf"), ("--epochs", "1e30"), ("--max-steps", "-5"),
                        ("--bits", "4294967304"), ("--batch-size", "0")):
        extra = ["--quant-noise-scalar", "0.5"] if flag == "--bits" else []
        outcomes.append(run(qnoise, small + extra + [flag, value, "--out", os.path.join(work, "n.pt")], work)[0])
    outcomes.append(run(qnoise, ["--threads", "100000", "info", good], work)[0])
    rows.append(("numbers on the command line (nan, inf, 1e30, -5, 2^32+8, 0, 100000 threads)", outcomes))

    # 5. Resume with other settings; a folder that cannot be written.
    outcomes = []
    resumable = os.path.join(work, "resume.pt")
    if os.path.exists(resumable):
        os.remove(resumable)
    subprocess.run([qnoise] + small + ["--max-steps", "4", "--stop-after", "2", "--out", resumable], check=True,
                   capture_output=True)
    for change in (["--lr", "0.01"], ["--optimizer", "sgd"], ["--clip-norm", "1"], ["--quant-noise-pq", "0.1"]):
        outcomes.append(run(qnoise, small + ["--max-steps", "4", "--resume", "--out", resumable] + change, work)[0])
    outcomes.append(run(qnoise, small + ["--max-steps", "4", "--out", "/nonexistent/dir/x.pt"], work)[0])
    rows.append(("--resume with another setting; --out in a missing folder", outcomes))

    print("| Class | Cases | Clean errors | Crashes | Hangs | Wrong answers |")
    print("|---|---|---|---|---|---|")
    for name, outcomes in rows:
        # Accepted flips are wrong answers: every data byte is covered by a checksum.
        print("| %s | %d | %d | %d | %d | %d |" % (name, len(outcomes), outcomes.count("clean"),
                                                 outcomes.count("crash"), outcomes.count("hang"),
                                                 outcomes.count("accepted")))
    return 0 if all(o == "clean" for _, outcomes in rows for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
