"""Int8 activations: each Linear/Conv layer's input fake-quantized per tensor to 8 bits, its range
observed on calibration batches. The state is the layer's buffer "input_quant" (min, max, scale,
zero point), as in the C++ library, so it travels in state dicts and .qnz files."""
import torch

from ._library import ops
from .errors import QnoiseError

BUFFER = "input_quant"
_HOOK = "_qnoise_input_hook"
QUANTIZED_INPUT_TYPES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)


def _quantize_input(module, inputs):
    return (ops.quantize_input(getattr(module, BUFFER), inputs[0]),) + tuple(inputs[1:])


def attach_input_quantization(module, state=None):
    """Gives `module` the buffer (a fresh, observing one unless `state` is given) and its hook."""
    module.register_buffer(BUFFER, ops.new_input_quant_state() if state is None else state.clone())
    if _HOOK not in module.__dict__:
        module.__dict__[_HOOK] = module.register_forward_pre_hook(_quantize_input)


RANGE_OBSERVERS = ("minmax", "mse")
HISTOGRAM_BINS = 2048


def calibrate(model, passes, ranges="minmax"):
    """Enables int8 inputs on every Linear/Conv layer and calibrates their ranges on `passes`:
    the min and max seen ("minmax"), or, after a second run of `passes` that counts each layer's
    non-zero inputs in a histogram over that span, the range with the least squared error ("mse",
    as `qnoise quantize --activation-ranges mse`)."""
    if ranges not in RANGE_OBSERVERS:
        raise QnoiseError(f"unknown activation range observer '{ranges}' (minmax or mse)")
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, QUANTIZED_INPUT_TYPES)]
    for _, module in layers:
        attach_input_quantization(module)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        passes()
        if ranges == "mse":
            _narrow_to_least_squared_error(layers, passes)
    for name, module in layers:
        ops.finish_input_calibration(getattr(module, BUFFER), name)
    model.train(was_training)
    return [name for name, _ in layers]


def _narrow_to_least_squared_error(layers, passes):
    spans, histograms, hooks = {}, {}, []
    for name, module in layers:
        state = getattr(module, BUFFER)
        low, high = float(state[0]), float(state[1])
        if not (low <= high):  # saw no input: finish_input_calibration names it
            continue
        spans[name] = (min(low, 0.0), max(high, 0.0))
        histograms[name] = torch.zeros(HISTOGRAM_BINS, dtype=torch.float64)

        def count(module, inputs, name=name):
            ops.count_input_histogram(histograms[name], inputs[0], *spans[name])
        hooks.append(module.register_forward_pre_hook(count))
    try:
        passes()
    finally:
        for hook in hooks:
            hook.remove()
    for name, module in layers:
        if name in spans and histograms[name].sum() > 0:
            state = getattr(module, BUFFER)
            state[0], state[1] = ops.mse_input_range(histograms[name], *spans[name], 8)


def reestimate_batch_norm(model, passes):
    """Every batch norm's running statistics recomputed as the plain average over `passes` (batch
    norms in training mode, the rest in eval mode, no gradients). Models without one: nothing."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    with torch.no_grad():
        passes()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


def forward_passes(model, batches):
    """A callable running the model on calibration batches: an iterable of inputs (of a (input,
    target) pair, the input) or a callable that runs the passes itself."""
    if callable(batches):
        return batches
    batches = list(batches)  # used more than once (batch norms, then int8 ranges)

    def run():
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    return run
