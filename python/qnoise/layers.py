"""Packed layers: a Linear, Conv1d, Conv2d or Embedding computed by qnoise's kernels straight
from its compressed weight (torch.classes.qnoise.PackedLayer). They script (torch.jit.script) and
save with torch.jit.save; loading such a file needs the operator library loaded first (import
qnoise, or torch.ops.load_library in Python; link libqnoise_ops in C++)."""
import torch

from ._library import classes


class PackedLayer(torch.nn.Module):
    """Runs `layer` (a torch.classes.qnoise.PackedLayer); `original` names the replaced type."""

    def __init__(self, layer, original: str):
        super().__init__()
        self.layer = layer
        self.original = original

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer.forward(x)

    def decoded_weight(self):
        return self.layer.weight()

    def resident_bytes(self):
        return self.layer.resident_bytes()

    def extra_repr(self):
        weight = self.layer.compressed()
        return f"{self.original}, {weight.scheme()} {weight.shape()}, {self.layer.resident_bytes()} bytes"


def _conv_geometry(module, dims):
    def values(v):
        return list(v) if isinstance(v, (tuple, list)) else [v] * dims
    return values(module.stride), values(module.padding), values(module.dilation), module.groups


def packable(module, parent):
    """None when `module` (a layer with a compressed weight) can run packed, else why not."""
    if isinstance(parent, torch.nn.MultiheadAttention):
        return "nn.MultiheadAttention reads its projections' weights itself"
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
        if module.padding_mode != "zeros":
            return f"padding_mode '{module.padding_mode}'"
        if isinstance(module.padding, str):
            return f"padding '{module.padding}'"
    if isinstance(module, torch.nn.Embedding) and module.max_norm is not None:
        return "max_norm renormalizes the table"
    return None


def pack(module, kind, weight, bias, input_quant, int8_activations, kernels):
    """The packed form of `module` for its compressed weight (and decoded bias, input_quant)."""
    if kind in ("conv1d", "conv2d"):
        stride, padding, dilation, groups = _conv_geometry(module, 1 if kind == "conv1d" else 2)
    else:
        stride, padding, dilation, groups = [1], [0], [1], 1
    layer = classes.PackedLayer(weight, bias, kind, stride, padding, dilation, groups, input_quant,
                                int8_activations, kernels)
    return PackedLayer(layer, type(module).__name__)
