"""Compressing users' models: plans, finetuning, files, packed layers, TorchScript, errors."""
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import qnoise
from models import ConvNet, Mlp, TinyLm, images, tokens

PQ_PLAN = {"stages": [{"name": "all", "layers": ["*"], "block_size": 4, "n_centroids": 32}],
           "blocks_per_centroid": 1}
# 3x3 kernels of one input channel (the stem, depthwise) in blocks of one whole kernel.
CONV_PQ_PLAN = {"stages": [{"name": "kernels", "layers": ["stem", "depthwise"], "block_size": 9, "n_centroids": 8},
                           {"name": "rest", "layers": ["*"], "block_size": 4, "n_centroids": 32}]}
MIXED_PLAN = {"stages": [{"name": "ffn", "layers": ["layer.linear*"], "block_size": 8, "n_centroids": 64},
                         {"name": "attention", "layers": ["layer.self_attn.*"], "scheme": "int8"},
                         {"name": "ends", "layers": ["embed", "out"], "scheme": "int4"}],
              "noise_rate": 0.1}


def fresh(model_type, seed=0):
    torch.manual_seed(seed)
    return model_type().eval()


def inputs_for(model):
    return tokens() if isinstance(model, TinyLm) else images() if isinstance(model, ConvNet) else torch.randn(5, 32)


def round_trip(model, tmp_path, **load_options):
    path = tmp_path / "model.qnz"
    size = qnoise.save(model, path)
    assert size == os.path.getsize(path)
    loaded = qnoise.load(path, fresh(type(model), seed=99), **load_options)
    return loaded, path


@pytest.mark.parametrize("model_type", [Mlp, ConvNet, TinyLm])
@pytest.mark.parametrize("plan", ["int8", "int4", PQ_PLAN])
def test_packed_model_computes_what_the_quantized_model_does(model_type, plan, tmp_path):
    model = fresh(model_type)
    plan = CONV_PQ_PLAN if model_type is ConvNet and plan is PQ_PLAN else plan
    qnoise.quantize(model, plan)
    x = inputs_for(model)
    with torch.no_grad():
        expected = model(x)
        loaded, _ = round_trip(model, tmp_path)
        assert torch.allclose(loaded(x), expected, atol=1e-4, rtol=1e-4)
        decoded, _ = round_trip(model, tmp_path, decoded=True)
        assert torch.allclose(decoded(x), expected, atol=1e-5, rtol=1e-5)
    packed = [m for m in loaded.modules() if isinstance(m, qnoise.PackedLayer)]
    assert packed and not any(isinstance(m, qnoise.PackedLayer) for m in decoded.modules())


def test_transformer_layers_and_bare_parameters(tmp_path):
    model = fresh(TinyLm)
    reports = qnoise.quantize(model, MIXED_PLAN)
    by_name = {r.name: r for r in reports}
    assert by_name["layer.linear1.weight"].scheme == "pq" and by_name["layer.linear1.weight"].stage == "ffn"
    assert by_name["layer.self_attn.in_proj_weight"].scheme == "int8"  # a bare parameter, chosen by name
    assert by_name["layer.self_attn.out_proj.weight"].scheme == "int8"
    assert by_name["embed.weight"].scheme == "int4" and by_name["out.weight"].scheme == "int4"
    loaded, path = round_trip(model, tmp_path)
    kinds = {name: type(m).__name__ for name, m in loaded.named_modules()}
    assert kinds["layer.linear1"] == "PackedLayer" and kinds["embed"] == "PackedLayer"
    assert kinds["layer.self_attn.out_proj"] != "PackedLayer"  # MultiheadAttention reads it itself
    ids = tokens()
    with torch.no_grad():
        assert torch.allclose(loaded(ids), model(ids), atol=1e-4, rtol=1e-4)
    info = qnoise.info(path)
    assert info["tensors"]["layer.self_attn.in_proj_weight"]["scheme"] == "int8"
    assert info["tensors"]["layer.norm1.weight"]["scheme"] == "float16"
    assert info["stored_bytes"] < info["float_bytes"] / 4


def test_ipq_finetunes_stage_by_stage_with_noise_on_later_layers():
    model = fresh(Mlp)
    x, target = torch.randn(64, 32), torch.randint(0, 10, (64,))
    seen = []

    def finetune(stage):
        params = stage.parameters()
        frozen = {id(p) for p in (model.fc1.weight, model.fc2.weight) if not p.requires_grad}
        assert not frozen & {id(p) for p in params}
        codebooks = [p for p in params if p.dim() == 2 and p.shape[1] == 8]
        before = [c.detach().clone() for c in codebooks]
        # later stages' layers are noised in training mode: two passes differ
        noisy = stage.index == 0 and not torch.equal(model(x), model(x))
        optimizer = torch.optim.SGD(params, lr=0.1)
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        moved = all(not torch.equal(b, c) for b, c in zip(before, codebooks))
        seen.append((stage.index, stage.name, stage.layers, len(codebooks), noisy, moved))

    plan = {"stages": [{"name": "first", "layers": ["fc1"], "block_size": 8, "n_centroids": 16},
                       {"name": "second", "layers": ["fc2"], "block_size": 8, "n_centroids": 16}],
            "noise_rate": 0.5}
    qnoise.quantize(model, plan, finetune=finetune)
    assert seen == [(0, "first", ["fc1.weight"], 1, True, True), (1, "second", ["fc2.weight"], 2, False, True)]
    assert not model.training


def test_centroid_gradient_is_the_mean_of_its_blocks():
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 5.0, 5.0]]))
    grads = []

    def finetune(stage):
        codebook = stage.parameters()[0]
        model(torch.ones(1, 4)).sum().backward()
        grads.append(codebook.grad.clone())

    qnoise.quantize(model, {"stages": [{"name": "s", "layers": ["0"], "block_size": 2, "n_centroids": 2}]},
                    finetune=finetune)
    # 3 blocks share (1, 1), one is (5, 5): each block's gradient is (1, 1), so both means are (1, 1)
    assert torch.equal(grads[0], torch.ones(2, 2))


def test_batch_norm_reestimation_and_int8_activations(tmp_path):
    model = fresh(ConvNet)
    batches = [images(8, seed=s) for s in range(3)]
    qnoise.quantize(model, CONV_PQ_PLAN, calibration=batches, int8_activations=True)
    stem = torch.cat([model.stem(b) for b in batches])
    assert torch.allclose(model.bn.running_mean, stem.mean((0, 2, 3)), atol=1e-3)
    assert model.head.input_quant[2] > 0  # calibrated scale
    x = images(4, seed=7)
    with torch.no_grad():
        loaded, path = round_trip(model, tmp_path)
        assert torch.allclose(loaded(x), model(x), atol=1e-3, rtol=1e-3)
    assert qnoise.info(path)["tensors"]["head.input_quant"]["scheme"] == "float32"


def test_mse_activation_ranges_clip_what_min_max_keeps():
    # Heavy tails (a normal over a uniform): min-max spends its levels on the rare large values.
    g = torch.Generator().manual_seed(5)
    batches = [images(64, seed=s) / torch.rand(64, 1, 8, 8, generator=g).clamp_min(0.01) for s in range(4)]
    ranges = {}
    for observer in ("minmax", "mse"):
        model = fresh(ConvNet)
        qnoise.quantize(model, "int8", calibration=batches, int8_activations=True, activation_ranges=observer)
        ranges[observer] = model.stem.input_quant.clone()
    x = torch.cat(batches)
    assert ranges["minmax"][0] == x.min() and ranges["minmax"][1] == x.max()
    assert ranges["minmax"][0] < ranges["mse"][0] <= 0 <= ranges["mse"][1] < ranges["minmax"][1]
    # The chosen range quantizes the calibration inputs with less error than min-max's.
    errors = {k: (torch.fake_quantize_per_tensor_affine(x, float(r[2]), int(r[3]), 0, 255) - x).pow(2).mean()
              for k, r in ranges.items()}
    assert errors["mse"] < errors["minmax"]
    with pytest.raises(qnoise.QnoiseError, match="unknown activation range observer 'histogram'"):
        qnoise.quantize(fresh(ConvNet), "int8", calibration=batches, int8_activations=True,
                        activation_ranges="histogram")


def test_scripted_compressed_model_saves_and_loads(tmp_path):
    model = fresh(ConvNet)
    qnoise.quantize(model, "int8")
    loaded, _ = round_trip(model, tmp_path)
    scripted = torch.jit.script(loaded)
    torch.jit.save(scripted, str(tmp_path / "model.pt"))
    again = torch.jit.load(str(tmp_path / "model.pt"))
    x = images(3, seed=5)
    with torch.no_grad():
        assert torch.equal(again(x), loaded(x))


def test_file_is_small(tmp_path):
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
    qnoise.quantize(model, {"stages": [{"name": "s", "layers": ["*"], "block_size": 8, "n_centroids": 256}]})
    size = qnoise.save(model, tmp_path / "m.qnz")
    float_bytes = 4 * sum(p.numel() for p in model.parameters())
    codes = 2 * 256 * 256 // 8  # one byte per block
    assert size < codes + 2 * (256 * 8 * 2) + 2 * 256 * 2 + 4096  # + codebooks, float16 biases, header
    assert float_bytes / size > 12


@pytest.mark.parametrize("plan, message", [
    ({"stages": [{"name": "s", "layers": ["decoder.*"], "scheme": "int8"}]},
     r"plan stage 0 \('s'\): pattern 'decoder.\*' matches no weight"),
    ({"stages": [{"name": "s", "layers": ["fc1"], "block_size": 5}]}, "block size 5 does not divide"),
    ({"stages": [{"name": "s", "layers": ["fc1"], "scheme": "int3"}]}, "unknown scheme 'int3'"),
    ({"stages": [], "lr": 1}, "stages"),
    ({"stages": [{"name": "s", "layers": ["fc1"]}], "unknown_key": 1}, "unknown_key"),
])
def test_bad_plans_are_named(plan, message):
    with pytest.raises(qnoise.QnoiseError, match=message):
        qnoise.quantize(fresh(Mlp), plan)


def test_misuse_is_named():
    model = fresh(Mlp)
    with pytest.raises(qnoise.QnoiseError, match="calibration"):
        qnoise.quantize(model, "int8", int8_activations=True)
    with qnoise.QuantNoise(model, [("*", 0.1, 8)]):
        with pytest.raises(qnoise.QnoiseError, match="still has Quant-Noise attached"):
            qnoise.quantize(model, "int8")
    qnoise.quantize(model, "int8")
    with pytest.raises(qnoise.QnoiseError, match="already quantized"):
        qnoise.quantize(model, "int8")


def test_files_that_do_not_fit_are_named(tmp_path):
    model = fresh(Mlp)
    qnoise.quantize(model, "int8")
    path = tmp_path / "m.qnz"
    qnoise.save(model, path)
    other = nn.Sequential(nn.Linear(32, 64))
    with pytest.raises(qnoise.QnoiseError, match=r"missing from the file: 0.weight, 0.bias \| in the file but not "
                                                 r"in the model: fc1.bias, fc1.weight, fc2.bias, fc2.weight"):
        qnoise.load(path, other)
    wider = Mlp()
    wider.fc2 = nn.Linear(64, 12)
    with pytest.raises(qnoise.QnoiseError, match=r"shapes differ: 'fc2.weight': file \[10, 64\], model \[12, 64\]"):
        qnoise.load(path, wider)
    with pytest.raises(qnoise.QnoiseError, match="cannot open|No such file|does not exist"):
        qnoise.load(tmp_path / "missing.qnz", fresh(Mlp))
    data = path.read_bytes()
    (tmp_path / "cut.qnz").write_bytes(data[: len(data) // 2])
    with pytest.raises(qnoise.QnoiseError, match="cut.qnz"):
        qnoise.load(tmp_path / "cut.qnz", fresh(Mlp))
    (tmp_path / "garbage.qnz").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(qnoise.QnoiseError, match="garbage.qnz"):
        qnoise.info(tmp_path / "garbage.qnz")


def test_info_command_prints_every_tensor_and_names_bad_files(tmp_path):
    import subprocess
    import sys
    model = fresh(Mlp)
    qnoise.quantize(model, "int4")
    qnoise.save(model, tmp_path / "m.qnz", metadata={"note": "hello"})
    run = [sys.executable, "-m", "qnoise", "info"]
    env = dict(os.environ, PYTHONPATH=str(Path(qnoise.__file__).resolve().parents[1]))  # this tree's package
    out = subprocess.run(run + [str(tmp_path / "m.qnz")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["tensor", "scheme", "shape", "bits/weight", "bytes"]
    assert any(line.split()[:3] == ["fc1.weight", "int4", "64x32"] for line in lines)
    assert 'metadata: {"note": "hello"}' in out.stdout
    bad = subprocess.run(run + [str(tmp_path / "none.qnz")], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "none.qnz" in bad.stderr


def test_fairseq_yaml_plan_errors_are_qnoise_errors(tmp_path):
    (tmp_path / "plan.yaml").write_text("layers_to_quantize:\n  - decoder\\\\.layers\\\\.\\d+\\\\.fc1\n")
    with pytest.raises(qnoise.QnoiseError, match="decoder"):
        qnoise.quantize(fresh(Mlp), str(tmp_path / "plan.yaml"))
