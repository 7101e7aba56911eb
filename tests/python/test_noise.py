"""Quant-Noise on users' modules: fairseq's quant_noise and the rule-based QuantNoise."""
import pytest
import torch
from torch import nn

import qnoise
from models import Mlp, TinyLm, tokens


def test_quant_noise_in_training_only_and_parameter_untouched():
    layer = qnoise.quant_noise(nn.Linear(16, 8), p=0.5, block_size=4)
    before = layer.weight.detach().clone()
    x = torch.randn(3, 16)
    layer.train()
    torch.manual_seed(0)
    noisy = layer(x)
    torch.manual_seed(0)
    weight = qnoise.ops.quant_noise(layer.weight, 0.5, 4)
    assert torch.equal(noisy, nn.functional.linear(x, weight, layer.bias))
    assert isinstance(layer.weight, nn.Parameter) and torch.equal(layer.weight, before)
    layer.eval()
    assert torch.equal(layer(x), nn.functional.linear(x, before, layer.bias))
    qnoise.remove_quant_noise(layer).train()
    assert torch.equal(layer(x), nn.functional.linear(x, before, layer.bias))


def test_gradient_reaches_the_parameter_straight_through():
    layer = qnoise.quant_noise(nn.Linear(8, 4, bias=False), p=0.5, block_size=4)
    layer(torch.ones(1, 8)).sum().backward()
    assert torch.equal(layer.weight.grad, torch.ones(4, 8))


def test_rules_take_the_first_match_and_reach_bare_parameters():
    model = TinyLm()
    noise = qnoise.QuantNoise(model, [("layer.self_attn.in_proj_weight", 0.1, 4, "int8"),
                                      ("layer.linear*", 0.2, 8), ("*", 0.05, 4)], attach=False)
    chosen = {t.name: r.pattern for t, r in noise.layers}
    assert chosen["layer.self_attn.in_proj_weight"] == "layer.self_attn.in_proj_weight"
    assert chosen["layer.linear1.weight"] == "layer.linear*"
    assert chosen["embed.weight"] == "*" and chosen["out.weight"] == "*"
    assert chosen["layer.self_attn.out_proj.weight"] == "*"


def test_context_manager_noises_then_restores():
    model = TinyLm().train()
    ids = tokens()
    clean = model(ids)
    with qnoise.QuantNoise(model, [("*", 0.3, 4)]):
        assert not torch.allclose(model(ids), clean)
    assert torch.equal(model(ids), clean)
    assert not any(k.startswith("_qnoise") for m in model.modules() for k in m.__dict__)


@pytest.mark.parametrize("rules, message", [
    ([("decoder.*", 0.1, 8)], "matches no weight qnoise can quantize; the model has: fc1, fc2"),
    ([("fc1", 0.1, 5)], "block size 5 does not divide in_features = 32 of 'fc1.weight'"),
    ([("fc1", 1.0, 8)], "pq noise with rate 1"),
    ([("fc1", -0.1, 8)], r"rate must be in \[0, 1\]"),
])
def test_bad_rules_are_named(rules, message):
    with pytest.raises(qnoise.QnoiseError, match=message):
        qnoise.QuantNoise(Mlp(), rules)


def test_layer_type_qnoise_cannot_handle_is_named():
    model = nn.Sequential(nn.LSTM(8, 8), nn.Linear(8, 2))
    with pytest.raises(qnoise.QnoiseError, match=r"only layers qnoise cannot compress: '0' \(LSTM\)"):
        qnoise.QuantNoise(model, [("0", 0.1, 4)])
    with pytest.raises(qnoise.QnoiseError, match="LSTM is not a layer qnoise can noise"):
        qnoise.quant_noise(model[0], 0.1, 4)
