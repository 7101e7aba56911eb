"""Which weights of a model qnoise can quantize, and choosing them by name.

A weight is chosen either by the name of its layer (a Linear and its subclasses, Conv1d, Conv2d or
Embedding: "encoder.layers.0.fc1") or by its parameter's full name, which also reaches weights
that are bare parameters of other modules ("encoder.layers.0.self_attn.in_proj_weight"; any
parameter of 2 or more dimensions whose first dimension is the output). Patterns are globs: '*'
matches any run of characters (dots included), '?' one character.
"""
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch

from .errors import QnoiseError

LAYER_TYPES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Embedding)


@dataclass
class Target:
    """One weight qnoise can quantize: `module.<param>`, named `layer` (its module's name)."""

    layer: str  # the module's name in the model ("" for the root)
    param: str  # the parameter's name in that module ("weight", "in_proj_weight")
    module: torch.nn.Module
    kind: str  # "linear", "embedding", "conv1d", "conv2d"; bare parameters are "linear" (2-D)

    @property
    def name(self):
        """The parameter's full name, as in the state dict."""
        return f"{self.layer}.{self.param}" if self.layer else self.param

    @property
    def weight(self):
        return self.module._parameters[self.param]

    def is_layer(self):
        """True for the weight of a layer qnoise can replace by a packed layer."""
        return self.param == "weight" and isinstance(self.module, LAYER_TYPES)


def layer_kind(module):
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    if isinstance(module, torch.nn.Conv2d):
        return "conv2d"
    if isinstance(module, torch.nn.Conv1d):
        return "conv1d"
    return "linear"


def candidate_weights(model):
    """Every weight qnoise can quantize, in module order."""
    found = []
    for layer, module in model.named_modules():
        for param, value in module.named_parameters(recurse=False):
            if value is None or value.dim() < 2:
                continue
            if isinstance(module, LAYER_TYPES):
                if param == "weight":
                    found.append(Target(layer, param, module, layer_kind(module)))
            elif value.dim() == 2:
                found.append(Target(layer, param, module, "linear"))
    return found


def matches(pattern, target):
    """True when `pattern` names the target's layer (layers only) or its parameter."""
    if target.is_layer() and fnmatchcase(target.layer, pattern):
        return True
    return fnmatchcase(target.name, pattern)


def unsupported_matches(model, pattern):
    """Modules with weights that qnoise cannot quantize whose name `pattern` matches, as 'name (Type)'."""
    named = []
    for layer, module in model.named_modules():
        if isinstance(module, LAYER_TYPES) or not fnmatchcase(layer, pattern):
            continue
        if any(p is not None and p.dim() >= 2 for p in module.parameters(recurse=False)):
            named.append(f"'{layer}' ({type(module).__name__})")
    return named


def no_match_error(model, pattern, where, targets):
    unsupported = unsupported_matches(model, pattern)
    if unsupported:
        return QnoiseError(
            f"{where}: pattern '{pattern}' matches only layers qnoise cannot compress: {', '.join(unsupported)}; "
            "qnoise compresses Linear, Conv1d, Conv2d and Embedding layers, and 2-D weights chosen by their "
            "parameter's name")
    names = [t.layer if t.is_layer() else t.name for t in targets]
    shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
    return QnoiseError(f"{where}: pattern '{pattern}' matches no weight qnoise can quantize; the model has: {shown}")


def assign(model, groups, where):
    """Each candidate weight to the first group (a list of patterns) matching it.

    Returns a list, per group, of its Targets. Raises QnoiseError when a pattern matches nothing.
    """
    targets = candidate_weights(model)
    chosen = [[] for _ in groups]
    for target in targets:
        for index, patterns in enumerate(groups):
            if any(matches(p, target) for p in patterns):
                chosen[index].append(target)
                break
    for index, patterns in enumerate(groups):
        for pattern in patterns:
            if not any(matches(pattern, t) for t in targets):
                raise no_match_error(model, pattern, where(index), targets)
    return chosen


def check_block_size(target, block_size, where):
    shape = list(target.weight.shape)
    row = 1
    for d in shape[1:]:
        row *= d
    if block_size < 1 or row % block_size != 0:
        what = {"linear": "in_features", "embedding": "embedding_dim"}.get(target.kind, "in_channels*kernel")
        raise QnoiseError(f"{where}: block size {block_size} does not divide {what} = {row} of '{target.name}' "
                          f"(shape {shape})")
