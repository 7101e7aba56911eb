"""Quant-Noise on the layers of any PyTorch model.

    qnoise.quant_noise(model.fc1, p=0.1, block_size=8)      # fairseq's signature: one layer
    noise = qnoise.QuantNoise(model, [("*.fc*", 0.1, 8), ("*.in_proj_weight", 0.05, 4, "int8")])
    with noise:                                              # or noise.attach() / noise.remove()
        train(model)

In training mode each forward pass draws a fresh random subset of the weight's blocks (each with
probability p, from torch's generator: torch.manual_seed makes it repeatable) and distorts them:
"pq" zeroes them and scales the rest by 1/(1-p) (the proxy for product quantization), "int8" /
"int4" / "intN" replace them by their fake-quantized values, "pq-exact" by their nearest centroid
of a given codebook. The gradient reaches the parameter straight through, and the parameter itself
is never modified (fairseq's hook scales it in place). In eval mode, or with p = 0, the layer is
unchanged. The operator is torch.ops.qnoise.quant_noise, the C++ library's: the same seed gives
the same mask.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from . import overrides, targets
from ._library import ops
from .errors import QnoiseError


@dataclass
class NoiseRule:
    """Layers (glob over layer or parameter names) noised at `rate` in blocks of `block_size`."""

    pattern: str
    rate: float = 0.1
    block_size: int = 8
    noise: str = "pq"  # "pq", "int8", "int4", "intN", "pq-exact"
    codebook: Optional[torch.Tensor] = None  # pq-exact: [K, block_size]

    @staticmethod
    def of(rule):
        if isinstance(rule, NoiseRule):
            return rule
        if isinstance(rule, dict):
            return NoiseRule(**rule)
        return NoiseRule(*rule)


def _check_rule(rule, where):
    if not 0.0 <= rule.rate <= 1.0:
        raise QnoiseError(f"{where}: Quant-Noise rate must be in [0, 1], got {rule.rate}")
    if rule.noise == "pq" and rule.rate >= 1.0:
        raise QnoiseError(f"{where}: pq noise with rate 1 would zero every block; use pq-exact noise for QAT")
    if rule.noise == "pq-exact" and rule.codebook is None:
        raise QnoiseError(f"{where}: pq-exact noise needs a codebook [K, block_size]")


def _noise_function(module, rule):
    workspace = []  # the noisy weight's buffer, reused from step to step once the last step's graph is gone

    def noisy(parameter):
        if not module.training or rule.rate == 0.0:
            return parameter
        if not workspace or workspace[0].shape != parameter.shape or workspace[0].dtype != parameter.dtype:
            workspace[:] = [torch.empty_like(parameter, memory_format=torch.contiguous_format)]
        return ops.quant_noise(parameter, rule.rate, rule.block_size, rule.noise, rule.codebook, True, workspace[0])
    return noisy


class QuantNoise:
    """Quant-Noise on every weight a rule matches (the first matching rule wins), until removed.

    Rules are NoiseRule values, (pattern, rate, block_size[, noise[, codebook]]) tuples or dicts.
    Raises QnoiseError for a pattern that matches nothing, a layer qnoise cannot handle, a block
    size that does not divide a layer, or a rate outside [0, 1].
    """

    def __init__(self, model, rules, attach=True):
        self.rules = [NoiseRule.of(r) for r in rules]
        if not self.rules:
            raise QnoiseError("Quant-Noise needs at least one rule")
        for i, rule in enumerate(self.rules):
            _check_rule(rule, f"Quant-Noise rule {i} ('{rule.pattern}')")
        groups = targets.assign(model, [[r.pattern] for r in self.rules],
                                lambda i: f"Quant-Noise rule {i} ('{self.rules[i].pattern}')")
        self.layers = []  # (Target, NoiseRule)
        for rule, chosen in zip(self.rules, groups):
            for target in chosen:
                targets.check_block_size(target, rule.block_size, f"Quant-Noise rule '{rule.pattern}'")
                self.layers.append((target, rule))
        self.attached = False
        if attach:
            self.attach()

    def attach(self):
        for target, rule in self.layers:
            if overrides.get_override(target.module, target.param) is not None:
                raise QnoiseError(f"'{target.name}' already has Quant-Noise (or is being quantized)")
            overrides.set_override(target.module, target.param, _noise_function(target.module, rule))
        self.attached = True
        return self

    def remove(self):
        if self.attached:
            for target, _ in self.layers:
                overrides.remove_override(target.module, target.param)
        self.attached = False

    def names(self):
        return [t.name for t, _ in self.layers]

    def __enter__(self):
        if not self.attached:
            self.attach()
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def quant_noise(module, p, block_size, noise="pq", codebook=None):
    """fairseq's quant_noise(module, p, block_size): Quant-Noise on one Linear, Conv1d, Conv2d or
    Embedding layer (its weight), in training mode only. Returns the module.

    To noise a whole model by name patterns, use QuantNoise; remove_quant_noise(module) undoes this.
    """
    if not isinstance(module, targets.LAYER_TYPES):
        raise QnoiseError(f"quant_noise: {type(module).__name__} is not a layer qnoise can noise (Linear, Conv1d, "
                          "Conv2d, Embedding); for other weights use QuantNoise with the parameter's name")
    rule = NoiseRule("", p, block_size, noise, codebook)
    _check_rule(rule, "quant_noise")
    target = targets.Target("", "weight", module, targets.layer_kind(module))
    targets.check_block_size(target, block_size, "quant_noise")
    overrides.set_override(module, "weight", _noise_function(module, rule))
    return module


def remove_quant_noise(module):
    overrides.remove_override(module, "weight")
    return module
