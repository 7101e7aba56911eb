"""fairseq's iPQ quantization configuration (YAML) as a qnoise quantization plan.

fairseq (examples/quant_noise, ``--quantization-config-path``) describes iPQ with three keys::

    n_centroids:                  # K per layer type, chosen by an attribute of the layer
      Linear: {key: in_features, value: {"*": 256}}
    block_sizes:                  # or by fuzzy_name: the first key that is part of the layer's name
      Linear: {key: fuzzy_name, value: {fc: 8, attn: 4, emb: 4}}
    layers_to_quantize:           # one regex per iPQ stage, over the layers' module names
      - decoder\\.layers\\.\\d+\\.fc[12]

Since block size and K depend on each layer, the plan is made for one model::

    plan = fairseq_plan("transformer_quantization_config.yaml", model, settings={"finetune_steps": 300})

It is a dict in qnoise's JSON plan format (docs/compression.md): each fairseq stage becomes one
qnoise stage per (block size, K) its layers get, listing their names exactly. The semantics are
fairseq's (fairseq/modules/quantization/pq/utils.py: get_layers, get_param) and the same as the C++
reader's (include/qnoise/fairseq_quantization_config.h):

* a regex matches a module name from its start (``re.match``), with an optional ``module.``
  prefix; the layers are the modules that hold a ``weight`` parameter of their own;
* a backslash pair in a regex stands for one backslash: fairseq's example YAML writes them so,
  and taken literally its regexes would ask for a backslash no module name holds;
* an attribute's value is compared as ``str(getattr(layer, key))`` with the value keys as text
  (``512``, ``"(3, 3)"``), ``"*"`` being the default;
* a key the file leaves out takes fairseq's default (parse_config_yaml).

Every mistake raises FairseqConfigError naming the key, the stage and the layer. This module
imports nothing else of qnoise.
"""

import os
import re

import torch.nn as nn
import yaml

__all__ = [
    "FairseqConfigError",
    "default_fairseq_config",
    "parse_fairseq_config",
    "read_fairseq_config",
    "is_fairseq_config_path",
    "fairseq_plan",
]

FAIRSEQ_KEYS = ("n_centroids", "block_sizes", "layers_to_quantize")

# The plan settings a caller may give beside the stages (include/qnoise/quantization_plan.h).
PLAN_SETTINGS = ("finetune_steps", "lr", "noise_rate", "kmeans_iterations", "blocks_per_centroid", "rest", "seed")

# The layer types qnoise quantizes, by the name fairseq's tables use.
QUANTIZABLE_TYPES = {"Linear": nn.Linear, "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d, "Embedding": nn.Embedding}


class FairseqConfigError(ValueError):
    """A fairseq quantization config that cannot be read, or does not fit the model."""


def default_fairseq_config():
    """fairseq's defaults (its Transformer LM example), for the keys a file leaves out."""
    return {
        "n_centroids": {"Linear": ("in_features", [("*", 256)]), "Embedding": ("embedding_dim", [("*", 256)])},
        "block_sizes": {
            "Linear": ("fuzzy_name", [("fc", 8), ("attn", 4), ("emb", 4)]),
            "Embedding": ("fuzzy_name", [("emb", 8)]),
        },
        "layers_to_quantize": [
            r"decoder\.layers\.\d+\.fc[12]",
            r"decoder\.embed_tokens\.embeddings\.[012]\.[01]",
            r"decoder\.layers\.\d+\.self_attn\.(k_proj|v_proj|q_proj|out_proj)",
        ],
    }


def _positive_integer(value, where):
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise FairseqConfigError(f"{where}: {value!r} is not a positive integer")
    if int(value) < 1:
        raise FairseqConfigError(f"{where}: '{value}' is not a positive integer")
    return int(value)


def _parameter_table(table, name):
    """n_centroids or block_sizes: {type: {key:, value: {...}}} -> {type: (key, [(text, int), ...])}."""
    if not isinstance(table, dict):
        raise FairseqConfigError(f"{name} must map layer types (Linear, Embedding, Conv2d) to {{key, value}}")
    out = {}
    for layer_type, entry in table.items():
        where = f"{name}.{layer_type}"
        if not isinstance(entry, dict):
            raise FairseqConfigError(f"{where} must be {{key: <attribute or fuzzy_name>, value: {{...}}}}")
        for field in entry:
            if field not in ("key", "value"):
                raise FairseqConfigError(f"{where} has no field '{field}' (it has key and value)")
        if not isinstance(entry.get("key"), str):
            raise FairseqConfigError(f"{where} needs a 'key': a layer attribute or fuzzy_name")
        values = entry.get("value")
        if not isinstance(values, dict) or not values:
            raise FairseqConfigError(f"{where} needs a 'value': a non-empty map such as {{\"*\": 256}}")
        pairs = []
        for key, value in values.items():
            number = _positive_integer(value, f"{where}.value.{key}")
            if name == "n_centroids" and not 2 <= number <= 65536:
                raise FairseqConfigError(f"{where}.value.{key}: n_centroids must be in [2, 65536], got {number}")
            pairs.append((str(key), number))
        out[str(layer_type)] = (entry["key"], pairs)
    return out


def _regex_list(regexes):
    if not isinstance(regexes, list) or not regexes:
        raise FairseqConfigError("layers_to_quantize must be a non-empty list of regexes")
    for i, regex in enumerate(regexes):
        if not isinstance(regex, str) or not regex:
            raise FairseqConfigError(f"layers_to_quantize[{i}] must be a regex over layer names")
    return list(regexes)


def _config_from_yaml_data(data, source):
    """The YAML's top-level map, checked, over fairseq's defaults."""
    if data is None:
        raise FairseqConfigError(f"{source} must be a YAML map with the keys {', '.join(FAIRSEQ_KEYS)} (it is empty)")
    if not isinstance(data, dict):
        raise FairseqConfigError(f"{source} must be a YAML map with the keys {', '.join(FAIRSEQ_KEYS)}")
    config = default_fairseq_config()
    try:
        for key, value in data.items():
            if key in ("n_centroids", "block_sizes"):
                config[key] = _parameter_table(value, key)
            elif key == "layers_to_quantize":
                config[key] = _regex_list(value)
            else:
                hint = "; a qnoise plan with stages is a .json file" if key == "stages" else ""
                raise FairseqConfigError(f"unknown key '{key}' (fairseq's keys are {', '.join(FAIRSEQ_KEYS)}{hint})")
    except FairseqConfigError as e:
        raise FairseqConfigError(f"{source}: {e}") from None
    return config


def parse_fairseq_config(text, source="fairseq quantization config"):
    """Reads fairseq's quantization YAML from text: {"n_centroids": {type: (key, [(value key, int)])},
    "block_sizes": ..., "layers_to_quantize": [regex, ...]}, in the file's order."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FairseqConfigError(f"{source} is not valid YAML: {e}") from None
    return _config_from_yaml_data(data, source)


def read_fairseq_config(path):
    """Reads fairseq's quantization YAML file; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise FairseqConfigError(f"cannot read the fairseq quantization config '{path}': {e.strerror}") from None
    return parse_fairseq_config(text, source=f"'{path}'")


def is_fairseq_config_path(path):
    """True for a .yaml or .yml file name: fairseq's format rather than qnoise's JSON plan."""
    return os.path.splitext(os.fspath(path))[1] in (".yaml", ".yml")


def _regex_text(written):
    """A regex as fairseq's YAML writes it, read as the text of a Python string literal: a backslash
    pair is one backslash."""
    out, i = [], 0
    while i < len(written):
        out.append(written[i])
        i += 2 if written[i] == "\\" and written[i + 1 : i + 2] == "\\" else 1
    return "".join(out)


def _layer_types(module):
    """The names under which fairseq's tables may list `module`: its class name, then the torch.nn
    type qnoise quantizes it as (a subclass of nn.Linear is looked up as Linear too)."""
    names = [type(module).__name__]
    for name, base in QUANTIZABLE_TYPES.items():
        if isinstance(module, base) and name not in names:
            names.append(name)
    return names


def _layer_value(table, table_name, module, name):
    """fairseq's get_param: the value `table` gives the layer `name`."""
    types = _layer_types(module)
    layer_type = next((t for t in types if t in table), None)
    if layer_type is None:
        raise FairseqConfigError(
            f"{table_name} has no entry for {' or '.join(types)} (layer '{name}'); it has: {', '.join(table)}"
        )
    key, values = table[layer_type]
    where = f"{table_name}.{layer_type}"
    by_key = dict(values)
    if key == "fuzzy_name":
        for part, value in values:
            if part != "*" and part in name:
                return value
        wanted = f"no fuzzy_name key is part of the layer name '{name}'"
    else:
        if not hasattr(module, key):
            raise FairseqConfigError(f"{where}: key '{key}' is neither fuzzy_name nor an attribute of {layer_type}")
        attribute = str(getattr(module, key))
        if attribute in by_key:
            return by_key[attribute]
        wanted = f"no value for {key}={attribute} (layer '{name}')"
    if "*" in by_key:
        return by_key["*"]
    raise FairseqConfigError(f'{where}: {wanted} and no "*" default')


def _weighted_layers(model):
    """What fairseq's get_layers looks at: the modules that hold a `weight` parameter of their own."""
    return [(name, module) for name, module in model.named_modules()
            if name and "weight" in dict(module.named_parameters(recurse=False))]


def _layer_list(layers, shown=24):
    names = [name for name, _ in layers[:shown]]
    more = f", ... ({len(layers)} in all)" if len(layers) > shown else ""
    return ", ".join(names) + more if names else "none"


def _stage_layers(config, model):
    """For each fairseq stage, its layers grouped by (block size, K) in the model's order."""
    layers = _weighted_layers(model)
    taken_by = {}
    stages = []
    for s, written in enumerate(config["layers_to_quantize"]):
        where = f"layers_to_quantize[{s}] '{written}'"
        try:
            regex = re.compile(r"(module\.)?(" + _regex_text(written) + ")")
        except re.error as e:
            raise FairseqConfigError(f"{where} is not a regular expression: {e}") from None
        groups = {}  # (block size, K) -> layer names, in first-seen order
        for name, module in layers:
            if not regex.match(name):
                continue
            if not isinstance(module, tuple(QUANTIZABLE_TYPES.values())):
                raise FairseqConfigError(
                    f"{where} matches '{name}', a {type(module).__name__}: fairseq's iPQ and qnoise quantize "
                    "Linear, Conv1d, Conv2d and Embedding layers only"
                )
            if name in taken_by:
                raise FairseqConfigError(f"{where} matches '{name}', which layers_to_quantize[{taken_by[name]}] already quantizes")
            taken_by[name] = s
            block_size = _layer_value(config["block_sizes"], "block_sizes", module, name)
            n_centroids = _layer_value(config["n_centroids"], "n_centroids", module, name)
            groups.setdefault((block_size, n_centroids), []).append(name)
        if not groups:
            raise FairseqConfigError(
                f"{where} matches no layer (a regex matches module names from their start); "
                f"the model's layers with weights: {_layer_list(layers)}"
            )
        stages.append(groups)
    return stages


def _is_parsed(config):
    """True for parse_fairseq_config's form (or fairseq's parse_config_yaml's): (key, values) tuples."""
    return all(key in config for key in FAIRSEQ_KEYS) and all(
        isinstance(entry, tuple) for table in ("n_centroids", "block_sizes") for entry in config[table].values()
    )


def _as_config(config):
    if isinstance(config, (str, os.PathLike)):
        return read_fairseq_config(config)
    if not isinstance(config, dict):
        raise FairseqConfigError(f"config must be a path or a dict, got {type(config).__name__}")
    if not _is_parsed(config):
        return _config_from_yaml_data(config, "fairseq quantization config")  # yaml.safe_load's form
    parsed = {"layers_to_quantize": _regex_list(config["layers_to_quantize"])}
    for table in ("n_centroids", "block_sizes"):
        parsed[table] = {}
        for layer_type, (key, values) in config[table].items():
            pairs = values.items() if isinstance(values, dict) else values
            parsed[table][layer_type] = (key, [(str(k), v) for k, v in pairs])
    return parsed


def fairseq_plan(config, model, settings=None):
    """The qnoise plan (a dict in the JSON plan format) that fairseq's quantization config gives
    `model`'s layers.

    config: a path to the YAML file, or the config as parse_fairseq_config, fairseq's
    parse_config_yaml or yaml.safe_load gives it.
    model: a torch.nn.Module.
    settings: the plan's other keys (finetune_steps, lr, noise_rate, kmeans_iterations,
    blocks_per_centroid, rest, seed), which fairseq's file does not have; left out, qnoise's defaults.
    Stages are named "stageN", or "stageN_blockB_kK" when one fairseq stage splits.
    """
    config = _as_config(config)
    if not isinstance(model, nn.Module):
        raise FairseqConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    settings = dict(settings or {})
    for key in settings:
        if key not in PLAN_SETTINGS:
            raise FairseqConfigError(f"settings: '{key}' is not a plan setting ({', '.join(PLAN_SETTINGS)})")
    stages = []
    for s, groups in enumerate(_stage_layers(config, model)):
        for (block_size, n_centroids), layers in groups.items():
            name = f"stage{s + 1}" + (f"_block{block_size}_k{n_centroids}" if len(groups) > 1 else "")
            stages.append({"name": name, "layers": layers, "block_size": block_size,
                           "n_centroids": n_centroids, "centroid_bits": 16})
    return {"stages": stages, **settings}
