"""A compressed model scripted in Python and run by the qnoise program (C++): `qnoise predict
--torchscript` and `qnoise eval --torchscript` load the operator library and the packed layers."""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import qnoise

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))
import fashion_mnist  # noqa: E402

QNOISE = os.environ.get("QNOISE_BINARY", str(Path(__file__).resolve().parents[2] / "build" / "qnoise"))


def classifier():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 10)).eval()


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchscript")
    model = classifier()
    qnoise.quantize(model, {"stages": [{"name": "s", "layers": ["2", "6"], "block_size": 4},
                                       {"name": "t", "layers": ["0"], "scheme": "int8"}]})
    qnoise.save(model, folder / "m.qnz")
    served = qnoise.load(folder / "m.qnz", classifier())
    assert sum(isinstance(m, qnoise.PackedLayer) for m in served.modules()) == 3
    torch.jit.save(torch.jit.script(served), str(folder / "m.pt"))
    return served, folder


def write_idx_images(path, images):
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, *images.shape))
        f.write(images.numpy().tobytes())


def run(*args):
    return subprocess.run([QNOISE, *args], capture_output=True, text=True, timeout=300)


def test_predict_runs_the_scripted_model_as_python_does(scripted):
    served, folder = scripted
    g = torch.Generator().manual_seed(1)
    raw = torch.randint(0, 256, (20, 28, 28), generator=g, dtype=torch.uint8)
    write_idx_images(folder / "images.idx", raw)
    result = run("predict", "--torchscript", str(folder / "m.pt"), str(folder / "images.idx"))
    assert result.returncode == 0, result.stderr
    printed = [int(line.split("\t")[1]) for line in result.stdout.splitlines()]
    with torch.no_grad():
        expected = served(((raw.float() / 255 - 0.2860) / 0.3530).unsqueeze(1)).argmax(1).tolist()
    assert printed == expected


def test_eval_reports_test_accuracy(scripted):
    served, folder = scripted
    result = run("eval", "--torchscript", str(folder / "m.pt"))
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    images, labels = fashion_mnist.load("t10k")
    with torch.no_grad():
        accuracy = (served(images).argmax(1) == labels).float().mean().item()
    assert line["weights"] == "torchscript" and line["test"]["examples"] == 10000
    assert abs(line["test"]["accuracy"] - accuracy) < 0.005  # the same images, normalized alike


def test_bad_files_are_named(tmp_path):
    result = run("eval", "--torchscript", str(tmp_path / "missing.pt"))
    assert result.returncode != 0 and "missing.pt' does not exist" in result.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a zip archive")
    result = run("predict", "--torchscript", str(tmp_path / "junk.pt"), str(tmp_path / "junk.pt"))
    assert result.returncode != 0 and "junk.pt' is not a TorchScript model" in result.stderr


def test_quantize_torchscript_int8_matches_python(tmp_path):
    model = classifier()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "float.pt"))
    result = run("quantize", "--torchscript", str(tmp_path / "float.pt"), "--scheme", "int8",
                 "--out", str(tmp_path / "m.qnz"))
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["layers"] == 3 and line["stored_bytes"] < line["float_bytes"] / 3
    info = qnoise.info(tmp_path / "m.qnz")["tensors"]
    assert info["0.weight"]["scheme"] == "int8" and info["6.bias"]["scheme"] == "float16"
    evaluated = run("eval", "--torchscript", str(tmp_path / "float.pt"), "--weights", str(tmp_path / "m.qnz"))
    assert evaluated.returncode == 0, evaluated.stderr
    qnoise.quantize(model, "int8")  # the same per-channel int8 and float16 rest, in Python
    images, labels = fashion_mnist.load("t10k")
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert abs(json.loads(evaluated.stdout)["test"]["accuracy"] - accuracy) < 0.005


def test_quantize_torchscript_ipq_finetunes_and_loads(tmp_path):
    torch.jit.save(torch.jit.script(classifier()), str(tmp_path / "float.pt"))
    result = run("quantize", "--torchscript", str(tmp_path / "float.pt"), "--scheme", "ipq", "--block-size", "4",
                 "--finetune-steps", "5", "--out", str(tmp_path / "m.qnz"))
    assert result.returncode == 0, result.stderr
    tensors = qnoise.info(tmp_path / "m.qnz")["tensors"]
    assert tensors["0.weight"]["scheme"] == "pq" and tensors["6.weight"]["scheme"] == "pq"
    evaluated = run("eval", "--torchscript", str(tmp_path / "float.pt"), "--weights", str(tmp_path / "m.qnz"))
    assert evaluated.returncode == 0, evaluated.stderr
    cpp_accuracy = json.loads(evaluated.stdout)["test"]["accuracy"]
    assert 0.0 <= cpp_accuracy <= 1.0
    # The file's tensors, decoded into the Python model, give the C++ program's accuracy.
    decoded = qnoise.load(tmp_path / "m.qnz", classifier(), decoded=True)
    images, labels = fashion_mnist.load("t10k")
    with torch.no_grad():
        accuracy = (decoded(images).argmax(1) == labels).float().mean().item()
    assert abs(cpp_accuracy - accuracy) < 0.002
    other = nn.Sequential(nn.Linear(4, 2))
    torch.jit.save(torch.jit.script(other), str(tmp_path / "other.pt"))
    mismatch = run("eval", "--torchscript", str(tmp_path / "other.pt"), "--weights", str(tmp_path / "m.qnz"))
    assert mismatch.returncode != 0 and "does not match the TorchScript model" in mismatch.stderr
    assert "0.weight (file [8, 1, 3, 3], model [2, 4])" in mismatch.stderr
    bad = run("quantize", "--torchscript", str(tmp_path / "float.pt"), "--scheme", "int3", "--out",
              str(tmp_path / "x.qnz"))
    assert bad.returncode != 0 and "--scheme: int3 not in" in bad.stderr
    both = run("quantize", "--torchscript", str(tmp_path / "float.pt"), "--scheme", "ipq+int8", "--out",
               str(tmp_path / "x.qnz"))
    assert both.returncode != 0 and "int8, int4 or ipq, not 'ipq+int8'" in both.stderr


class TinyLm(nn.Module):
    def __init__(self, vocabulary):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, 16)
        self.hidden = nn.Linear(16, 32)
        self.out = nn.Linear(32, vocabulary)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.embed(ids))))


def test_quantize_and_eval_a_torchscript_language_model(tmp_path):
    words = "in the beginning god created the heaven and the earth and the earth was without form".split()
    for split, repeat in (("train", 40), ("valid", 5), ("test", 5)):
        (tmp_path / f"wiki.{split}.tokens").write_text((" ".join(words) + "\n") * repeat)
    vocabulary = ["<pad>", "</s>", "<unk>"] + sorted(set(words))
    (tmp_path / "vocab.txt").write_text("".join(f"{w} 1\n" for w in vocabulary))
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TinyLm(len(vocabulary))), str(tmp_path / "lm.pt"))
    common = ["--task", "lm", "--data", str(tmp_path), "--vocab", str(tmp_path / "vocab.txt"), "--seq-len", "8"]
    before = run("eval", "--torchscript", str(tmp_path / "lm.pt"), *common)
    assert before.returncode == 0, before.stderr
    perplexity = {}
    for steps in ("0", "60"):
        out = str(tmp_path / f"lm_{steps}.qnz")
        result = run("quantize", "--torchscript", str(tmp_path / "lm.pt"), "--scheme", "ipq", "--block-size", "4",
                     "--finetune-steps", steps, "--out", out, *common)
        assert result.returncode == 0, result.stderr
        after = run("eval", "--torchscript", str(tmp_path / "lm.pt"), "--weights", out, *common)
        assert after.returncode == 0, after.stderr
        perplexity[steps] = json.loads(after.stdout)["valid"]["perplexity"]
    untrained = json.loads(before.stdout)["valid"]["perplexity"]
    assert 1 < perplexity["60"] < perplexity["0"] and perplexity["60"] < untrained  # finetuning learned
    (tmp_path / "bigger.txt").write_text("".join(f"{w} 1\n" for w in vocabulary + ["serpent"]))
    wrong = run("eval", "--torchscript", str(tmp_path / "lm.pt"), "--task", "lm", "--data", str(tmp_path),
                "--vocab", str(tmp_path / "bigger.txt"))
    assert wrong.returncode != 0 and "(the vocabulary has 15 tokens)" in wrong.stderr
