"""Quantization plans: ordered stages of layer patterns, each PQ (block size, K), int8 or int4.

The format is the C++ library's (docs/compression.md), parsed and checked by it, so a plan means
the same from Python and from `qnoise quantize --plan`:

    {"stages": [{"name": "ffn", "layers": ["*.fc1", "*.fc2"], "block_size": 8, "n_centroids": 256},
                {"name": "attention", "layers": ["*.self_attn.*"], "scheme": "int8"}],
     "noise_rate": 0.05, "kmeans_iterations": 15, "blocks_per_centroid": 4, "rest": "float16"}

Shorthands: "int8" / "int4" (one stage, every layer), or {"scheme": "pq", "block_size": 8,
"n_centroids": 256} (one PQ stage over every layer).
"""
import json
from pathlib import Path

from ._library import ops
from .errors import QnoiseError


def _shorthand(plan):
    if isinstance(plan, str) and plan in ("int8", "int4"):
        return {"stages": [{"name": plan, "layers": ["*"], "scheme": plan}]}
    if isinstance(plan, dict) and "stages" not in plan and "scheme" in plan:
        stage = dict(plan)
        stage.setdefault("name", stage["scheme"])
        stage.setdefault("layers", ["*"])
        return {"stages": [stage]}
    return plan


def normalize_plan(plan, model=None):
    """The plan as a dict with every field filled in. Accepts a dict, JSON text, a shorthand, or a
    path to a .json plan or to fairseq's quantization .yaml (which needs the model)."""
    if isinstance(plan, Path) or (isinstance(plan, str) and plan.endswith((".json", ".yaml", ".yml"))):
        path = Path(plan)
        if not path.is_file():
            raise QnoiseError(f"quantization plan '{path}' does not exist")
        if path.suffix in (".yaml", ".yml"):
            from . import fairseq_config  # fairseq's format: per-layer values need the model
            if model is None:
                raise QnoiseError("a fairseq quantization YAML is resolved against the model: pass it")
            try:
                plan = fairseq_config.fairseq_plan(path, model)
            except fairseq_config.FairseqConfigError as error:  # standalone module: its own ValueError
                raise QnoiseError(str(error)) from None
        else:
            plan = path.read_text()
    plan = _shorthand(plan)
    text = plan if isinstance(plan, str) else json.dumps(plan)
    try:
        normalized = json.loads(ops.parse_plan(text))
    except (RuntimeError, ValueError) as error:
        raise QnoiseError(str(error).splitlines()[0]) from None
    for stage in normalized["stages"]:
        stage.setdefault("scheme", "pq")  # the C++ form leaves it out for PQ stages
    return normalized


def centroids_for(plan, stage, n_blocks):
    """K for a PQ layer of n_blocks blocks: the stage's K, at most n_blocks / blocks_per_centroid
    (the C++ library's rule)."""
    return ops.centroids_for(stage["n_centroids"], plan["blocks_per_centroid"], n_blocks)
