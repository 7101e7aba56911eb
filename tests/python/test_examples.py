"""The examples in examples/python run end to end (a few steps each) and print what they promise;
the compressed ResNet's TorchScript file runs in the qnoise program with the accuracy Python saw."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QNOISE = os.environ.get("QNOISE_BINARY", str(ROOT / "build" / "qnoise"))


def run_example(name, *args):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "python" / name), *args],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_resnet_example_compresses_reloads_and_runs_from_cpp(tmp_path):
    scripted = tmp_path / "resnet18.pt"
    out = run_example("resnet_fashion_mnist.py", "--steps", "3", "--finetune-steps", "1", "--torchscript",
                      str(scripted))
    found = re.search(r"iPQ \.qnz: (\d+) bytes \(([\d.]+)x smaller\), ([\d.]+)%.* (\d+) layers on qnoise's kernels", out)
    assert found, out
    assert float(found.group(2)) > 10 and int(found.group(4)) == 20
    result = subprocess.run([QNOISE, "eval", "--torchscript", str(scripted)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    cpp = 100 * json.loads(result.stdout)["test"]["accuracy"]
    assert abs(cpp - float(found.group(3))) < 0.5, (cpp, out)


def test_lm_example_prints_int8_and_int4_rows():
    out = run_example("kjv_lm.py", "--steps", "3", "--dim", "64", "--vocab", "512")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["int8"], ["int4"])}
    assert set(rows) == {"int8", "int4"}
    assert float(rows["int4"][3].rstrip("x")) > float(rows["int8"][3].rstrip("x")) > 3
