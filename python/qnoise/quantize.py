"""Compressing a PyTorch model by a quantization plan: int8, int4, PQ / iPQ and mixed plans.

    def finetune(stage):                      # your own training loop
        optimizer = torch.optim.Adam(stage.parameters(), lr=1e-4)
        for x, y in batches(300):
            loss = criterion(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()

    report = qnoise.quantize(model, plan, finetune=finetune, calibration=some_inputs)
    qnoise.save(model, "model.qnz")

Stages run in order. A PQ stage runs k-means on each layer's blocks (torch.ops.qnoise.pq_encode,
seeded as the C++ library seeds it) and makes the layer compute with codebook[codes]; the codes
stay fixed and the centroids become trainable, each moved by the mean gradient of its blocks (until
quantize() returns, they are a parameter of their layer, such as "fc1.weight_centroids", so that
model.parameters() and DistributedDataParallel see them). An int8 / int4 stage stores each layer
per output channel and freezes it. Then finetune(stage) runs, with Quant-Noise (plan["noise_rate"])
on the layers of later stages. Afterwards the model holds what the file will hold (decoded weights;
the rest rounded to float16 unless plan["rest"] is "float32"), in eval mode, so evaluating it
gives the compressed model's numbers.
"""
from dataclasses import dataclass, field
import time

import torch

from . import activations, overrides, targets
from ._library import ops
from .errors import QnoiseError
from .noise import NoiseRule, _noise_function
from .plan import centroids_for, normalize_plan

STATE = "_qnoise_state"


@dataclass
class LayerReport:
    name: str
    stage: str
    scheme: str
    shape: list
    block_size: int
    n_centroids: int
    relative_error: float  # ||W - decoded|| / ||W|| right after quantization
    seconds: float = 0.0  # k-means


@dataclass
class CompressionState:
    """What quantize() leaves on the model for save(): the plan and each quantized weight."""

    plan: dict
    weights: dict = field(default_factory=dict)  # parameter name -> torch.classes.qnoise.CompressedTensor
    layers: list = field(default_factory=list)  # LayerReport
    int8_activations: bool = False


@dataclass
class _PqWeight:
    target: targets.Target
    codebook: torch.nn.Parameter  # [K, block_size], trainable
    codes: torch.Tensor  # int64 [n_blocks], fixed
    centroid_bits: int

    def stored_codebook(self):
        """The centroids as the forward pass sees them: rounded as stored (straight through)."""
        if self.centroid_bits == 16:
            return self.codebook
        rounded = ops.round_centroids(self.codebook, self.centroid_bits)
        return self.codebook + (rounded - self.codebook).detach()

    def decoded(self):
        return ops.pq_decode(self.stored_codebook(), self.codes, list(self.target.weight.shape))

    def compressed(self):
        return ops.compress_pq(self.codebook.detach(), self.codes, list(self.target.weight.shape),
                               self.target.kind, self.centroid_bits)


class Stage:
    """What finetune(stage) gets after a stage is quantized."""

    def __init__(self, model, index, spec, layers, pq):
        self.model = model
        self.index = index  # 0-based, in the plan
        self.name = spec["name"]
        self.scheme = spec["scheme"]
        self.layers = layers  # the parameter names this stage quantized
        self._pq = pq

    def parameters(self):
        """What to optimize: every parameter that still requires grad (quantized weights are
        frozen), among them the centroids of every PQ layer so far."""
        return [p for p in self.model.parameters() if p.requires_grad]


def _relative_error(original, decoded):
    norm = original.norm()
    return float((original - decoded).norm() / norm) if norm > 0 else float((original - decoded).norm())


def _centroids_name(target):
    return target.param + "_centroids"


def _quantize_pq(plan, spec, target, stream):
    weight = target.weight.detach().float().clone()
    n_blocks = weight.numel() // spec["block_size"]
    k = centroids_for(plan, spec, n_blocks)
    start = time.perf_counter()
    codebook, codes = ops.pq_encode(weight, spec["block_size"], k, plan["kmeans_iterations"], plan["seed"], stream)
    seconds = time.perf_counter() - start
    pq = _PqWeight(target, torch.nn.Parameter(codebook.to(weight.device)), codes, spec.get("centroid_bits", 16))
    uses = torch.bincount(codes, minlength=k).clamp(min=1).to(codebook.dtype).unsqueeze(1)
    pq.codebook.register_hook(lambda grad, inverse=1.0 / uses: grad * inverse.to(grad.device))
    # A parameter of the layer while finetuning, so that optimizers over model.parameters() and
    # DistributedDataParallel (which averages the gradients of the parameters it finds) train it.
    target.module.register_parameter(_centroids_name(target), pq.codebook)
    decoded = pq.decoded().detach()
    error = _relative_error(weight, decoded)
    with torch.no_grad():
        target.weight.copy_(decoded)
    target.weight.requires_grad_(False)
    overrides.set_override(target.module, target.param, lambda parameter, pq=pq: pq.decoded())
    report = LayerReport(target.name, spec["name"], "pq", list(weight.shape), spec["block_size"], k, error, seconds)
    return pq, report


def _quantize_scalar(spec, target):
    bits = 8 if spec["scheme"] == "int8" else 4
    weight = target.weight.detach().float().clone()
    stored = ops.compress_scalar(weight, bits, "minmax")
    decoded = stored.decode()
    with torch.no_grad():
        target.weight.copy_(decoded.view_as(target.weight))
    target.weight.requires_grad_(False)
    report = LayerReport(target.name, spec["name"], spec["scheme"], list(weight.shape), 1, 1 << bits,
                         _relative_error(weight, decoded))
    return stored, report


def _later_stage_noise(plan, stages, groups, index):
    """Quant-Noise on the layers later stages will quantize: PQ's proxy on their blocks, scalar
    stages' own fake quantization on single weights."""
    attached = []
    if plan["noise_rate"] <= 0:
        return attached
    for spec, chosen in zip(stages[index + 1:], groups[index + 1:]):
        pq = spec["scheme"] == "pq"
        rule = NoiseRule("", plan["noise_rate"], spec["block_size"] if pq else 1, "pq" if pq else spec["scheme"])
        for target in chosen:
            overrides.set_override(target.module, target.param, _noise_function(target.module, rule))
            attached.append(target)
    return attached


def quantize(model, plan, finetune=None, calibration=None, int8_activations=False, recalibrate_batch_norm=None,
             log=None, activation_ranges="minmax"):
    """Compresses `model` in place by `plan` (see plan.py); returns the per-layer reports.

    finetune(stage): your training loop, run after each stage (Stage.parameters() is what to
    optimize). calibration: inputs for clean forward passes (an iterable of inputs or of (input,
    target) pairs, or a callable that runs them): batch-norm statistics are re-estimated on them
    after each stage (recalibrate_batch_norm, default: whenever calibration is given), and with
    int8_activations=True every Linear/Conv layer's input range is calibrated on them, by min and
    max or, with activation_ranges="mse", by least squared error (activations.calibrate).
    log(text): progress lines. Raises QnoiseError for a plan that does not fit the model.
    """
    say = log or (lambda text: None)
    plan = normalize_plan(plan, model)
    stages = plan["stages"]
    if any(overrides.has_overrides(m) for m in model.modules()):
        raise QnoiseError("the model still has Quant-Noise attached: remove it (QuantNoise.remove(), or leave its "
                          "`with` block) before quantizing; finetuning noises the layers of later stages itself")
    if isinstance(model.__dict__.get(STATE), CompressionState):
        raise QnoiseError("the model is already quantized; quantize a fresh instance")
    groups = targets.assign(model, [s["layers"] for s in stages],
                            lambda i: f"plan stage {i} ('{stages[i]['name']}')")
    for spec, chosen in zip(stages, groups):
        if spec["scheme"] == "pq":
            for target in chosen:
                targets.check_block_size(target, spec["block_size"], f"plan stage '{spec['name']}'")
    if int8_activations and calibration is None:
        raise QnoiseError("int8 activations need calibration inputs (calibration=...)")
    if activation_ranges not in activations.RANGE_OBSERVERS:
        raise QnoiseError(f"unknown activation range observer '{activation_ranges}' (minmax or mse)")
    passes = activations.forward_passes(model, calibration) if calibration is not None else None
    if recalibrate_batch_norm is None:
        recalibrate_batch_norm = passes is not None
    elif recalibrate_batch_norm and passes is None:
        raise QnoiseError("batch-norm re-estimation needs calibration inputs (calibration=...)")

    state = CompressionState(plan)
    pq_weights = []
    for index, (spec, chosen) in enumerate(zip(stages, groups)):
        names = []
        for target in chosen:
            if spec["scheme"] == "pq":
                pq, report = _quantize_pq(plan, spec, target, len(pq_weights))
                pq_weights.append(pq)
            else:
                state.weights[target.name], report = _quantize_scalar(spec, target)
            state.layers.append(report)
            names.append(target.name)
            say(f"stage {index} '{spec['name']}': {target.name} {report.scheme} "
                f"relative error {report.relative_error:.4f}")
        if finetune is not None:
            noised = _later_stage_noise(plan, stages, groups, index)
            model.train()
            try:
                finetune(Stage(model, index, spec, names, pq_weights))
            finally:
                for target in noised:
                    overrides.remove_override(target.module, target.param)
            with torch.no_grad():
                for pq in pq_weights:
                    pq.target.weight.copy_(pq.decoded())
        if recalibrate_batch_norm:
            activations.reestimate_batch_norm(model, passes)

    for pq in pq_weights:
        overrides.remove_override(pq.target.module, pq.target.param)
        del pq.target.module._parameters[_centroids_name(pq.target)]
        state.weights[pq.target.name] = pq.compressed()
        with torch.no_grad():
            pq.target.weight.copy_(state.weights[pq.target.name].decode().view_as(pq.target.weight))
    if plan["rest"] == "float16":
        with torch.no_grad():
            for name, tensor in model.state_dict(keep_vars=True).items():
                if name not in state.weights and tensor.is_floating_point():
                    tensor.copy_(tensor.half().to(tensor.dtype))
    if int8_activations:
        activations.calibrate(model, passes, activation_ranges)
        state.int8_activations = True
    model.__dict__[STATE] = state
    model.eval()
    return state.layers
