"""Compressed model files (.qnz) from Python: save, load into your architecture, info.

The file is the C++ library's .qnz (docs/format.md): quantized weights as codes and codebooks or
scales, every other floating-point tensor in float16 (or float32, per the plan's "rest"). Loading
needs an instance of the model's architecture: its layers with compressed weights are replaced by
packed layers that run qnoise's kernels (or, with decoded=True, hold the decoded float weights).
"""
import json
import os

import torch

from . import activations, layers, targets
from ._library import classes, ops
from .errors import QnoiseError
from .quantize import STATE

# Step counters of batch norms: inference never reads them (as in the C++ library).
_SKIPPED_BUFFERS = ("num_batches_tracked",)


def _stored_tensors(model):
    """(name, tensor) of every tensor the file holds, in state-dict order; the non-float ones,
    which are not stored, listed apart."""
    stored, skipped = [], []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name.rsplit(".", 1)[-1] in _SKIPPED_BUFFERS:
            continue
        (stored if tensor.is_floating_point() else skipped).append((name, tensor))
    return stored, [name for name, _ in skipped]


def save(model, path, metadata=None):
    """Writes `model` (compressed by qnoise.quantize, or not: then every tensor is stored as the
    plan's rest) to `path` atomically; returns the file's size in bytes."""
    state = model.__dict__.get(STATE)
    plan = dict(state.plan) if state is not None else {"stages": [], "rest": "float16"}
    weights = state.weights if state is not None else {}
    stored, skipped = _stored_tensors(model)
    names, tensors = [], []
    for name, tensor in stored:
        names.append(name)
        if name in weights:
            tensors.append(weights[name])
        else:
            exact = name.endswith("." + activations.BUFFER)  # int8 activations' ranges stay exact
            scheme = "float32" if exact else plan.get("rest", "float16")
            tensors.append(ops.compress_float(tensor.detach().float().cpu(), scheme))
    plan["activations"] = "int8" if state is not None and state.int8_activations else "float"
    meta = {"task": None, "plan": plan,
            "artifacts": {"python": {"model": type(model).__name__, "metadata": metadata or {},
                                     "not_stored": skipped}}}
    try:
        ops.write_qnz(str(path), names, tensors, json.dumps(meta))
    except (RuntimeError, ValueError) as error:
        raise QnoiseError(str(error).splitlines()[0]) from None
    return os.path.getsize(path)


def _read(path):
    try:
        return classes.QnzFile(str(path))
    except (RuntimeError, ValueError) as error:
        raise QnoiseError(str(error).splitlines()[0]) from None


def info(path):
    """What a .qnz file holds: {"tensors": {name: {scheme, shape, bytes, bits_per_weight}},
    "stored_bytes", "float_bytes", "plan", "metadata"}."""
    f = _read(path)
    meta = json.loads(f.metadata())
    tensors = {}
    for name in f.names():
        w = f.weight(name)
        tensors[name] = {"scheme": w.scheme(), "shape": w.shape(), "bytes": w.stored_bytes(),
                         "bits_per_weight": w.bits_per_weight()}
    python = (meta.get("artifacts") or {}).get("python", {})
    return {"tensors": tensors, "stored_bytes": f.stored_bytes(), "float_bytes": f.float_bytes(),
            "plan": meta.get("plan"), "metadata": python.get("metadata", {}), "task": meta.get("task")}


def _check_fits(f, model, expected):
    stored = set(f.names())
    quant_inputs = {n for n in stored if n.endswith("." + activations.BUFFER)}
    missing = [n for n in expected if n not in stored]
    unexpected = sorted(stored - set(expected) - quant_inputs)
    wrong = [f"'{n}': file {f.weight(n).shape()}, model {list(t.shape)}" for n, t in expected.items()
             if n in stored and f.weight(n).shape() != list(t.shape)]
    problems = []
    if missing:
        problems.append("missing from the file: " + ", ".join(missing))
    if unexpected:
        problems.append("in the file but not in the model: " + ", ".join(unexpected))
    if wrong:
        problems.append("shapes differ: " + "; ".join(wrong))
    if problems:
        raise QnoiseError(f"the file does not match this {type(model).__name__}: " + " | ".join(problems))


def _modules_by_name(model):
    parents = {}
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            parents[f"{name}.{child_name}" if name else child_name] = (module, child_name)
    return dict(model.named_modules()), parents


def _leave_fused_fast_paths(model):
    """PyTorch's TransformerEncoderLayer, in eval mode, runs a fused kernel that reads its Linear
    layers' float weights directly. Its guard `activation_relu_or_gelu` only chooses that kernel
    (the regular path calls self.activation either way), so clearing it makes the layer call its
    (packed) layers."""
    for module in model.modules():
        if isinstance(module, torch.nn.TransformerEncoderLayer) and any(
                isinstance(child, layers.PackedLayer) for child in module.modules()):
            module.activation_relu_or_gelu = False


def load(path, model, decoded=False, kernels="auto", int8_activations=False):
    """Puts the compressed model in `path` into `model`, an instance of its architecture, and
    returns it in eval mode. Layers stored compressed (Linear and subclasses, Conv1d, Conv2d,
    Embedding) become qnoise.layers.PackedLayer modules running qnoise's kernels ("auto",
    "reference", "avx2", "avx512"; int8_activations=True quantizes each input row to int8 in the
    kernels), unless decoded=True; everything else is decoded into the model's own tensors.
    Raises QnoiseError when the file does not match the model (names and shapes listed)."""
    f = _read(path)
    stored, _ = _stored_tensors(model)
    expected = dict(stored)
    _check_fits(f, model, expected)
    modules, parents = _modules_by_name(model)
    names = set(f.names())

    def decoded_tensor(name):
        return f.weight(name).decode()

    # int8 activations' ranges: the hook on every layer the file calibrated.
    for name in names:
        if name.endswith("." + activations.BUFFER):
            layer = name[: -len(activations.BUFFER) - 1]
            if layer not in modules:
                raise QnoiseError(f"the file calibrates the input of '{layer}', which this model does not have")
            activations.attach_input_quantization(modules[layer], decoded_tensor(name))

    packed = set()
    if not decoded:
        for target in targets.candidate_weights(model):
            if not target.is_layer() or target.name not in names:
                continue
            weight = f.weight(target.name)
            if weight.scheme() in ("float32", "float16"):
                continue
            parent, child_name = parents.get(target.layer, (None, None))
            if parent is None or layers.packable(target.module, parent) is not None:
                continue
            bias_name = target.layer + ".bias"
            bias = decoded_tensor(bias_name) if bias_name in names else None
            input_quant = getattr(target.module, activations.BUFFER, None)
            replacement = layers.pack(target.module, target.kind, weight, bias, input_quant, int8_activations, kernels)
            setattr(parent, child_name, replacement)
            packed.update({target.name, bias_name, target.layer + "." + activations.BUFFER})
    if packed:
        _leave_fused_fast_paths(model)
    with torch.no_grad():
        for name, tensor in expected.items():
            if name not in packed:
                tensor.copy_(decoded_tensor(name).view(tensor.shape).to(tensor.dtype))
    model.eval()
    return model
