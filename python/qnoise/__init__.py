"""qnoise from Python: Quant-Noise training, compression (int8, int4, iPQ, mixed plans) and
compressed inference on qnoise's kernels, for your own PyTorch models. See docs/python.md."""
from ._library import classes, load_library, ops
from .errors import QnoiseError
from .io import info, load, save
from .layers import PackedLayer
from .noise import NoiseRule, QuantNoise, quant_noise, remove_quant_noise
from .plan import normalize_plan
from .quantize import LayerReport, Stage, quantize

__all__ = ["QnoiseError", "QuantNoise", "NoiseRule", "quant_noise", "remove_quant_noise", "quantize", "Stage",
           "LayerReport", "save", "load", "info", "normalize_plan", "PackedLayer", "ops", "classes", "load_library"]
