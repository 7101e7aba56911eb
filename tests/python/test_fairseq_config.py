"""python/qnoise/fairseq_config.py: fairseq's quantization YAML as a qnoise plan dict.

The module is loaded by its path, so this test needs neither the rest of the qnoise package nor
its operator library: /usr/bin/python3 -m pytest -q tests/python/test_fairseq_config.py
"""

import importlib.util
import pathlib

import pytest
import torch.nn as nn

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE_YAML = ROOT / "tests" / "data" / "fairseq" / "transformer_quantization_config.yaml"


def _load_module():
    spec = importlib.util.spec_from_file_location("qnoise_fairseq_config", ROOT / "python" / "qnoise" / "fairseq_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fc = _load_module()


class SelfAttention(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)


class DecoderLayer(nn.Module):
    """fairseq's TransformerDecoderLayer's module names."""

    def __init__(self, width):
        super().__init__()
        self.self_attn = SelfAttention(width)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)


class AdaptiveInput(nn.Module):
    """fairseq's AdaptiveInput: per band an Embedding and its projection."""

    def __init__(self):
        super().__init__()
        self.embeddings = nn.ModuleList([
            nn.Sequential(nn.Embedding(40, 16), nn.Linear(16, 16)),
            nn.Sequential(nn.Embedding(24, 8), nn.Linear(8, 16)),
        ])


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([DecoderLayer(16) for _ in range(2)])
        self.embed_tokens = AdaptiveInput()


class FairseqShapedLm(nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = Decoder()


class SmallMixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(32, 16)
        self.conv3x3 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv1x1 = nn.Conv2d(16, 16, 1)
        self.seq = nn.Conv1d(16, 16, 3)
        self.fc_in16 = nn.Linear(16, 32)
        self.fc_in32 = nn.Linear(32, 8)


def stage(name, layers, block_size, n_centroids):
    return {"name": name, "layers": layers, "block_size": block_size, "n_centroids": n_centroids, "centroid_bits": 16}


def attention(i):
    return [f"decoder.layers.{i}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")]


def test_fairseqs_example_yaml_gives_this_exact_plan():
    plan = fc.fairseq_plan(EXAMPLE_YAML, FairseqShapedLm(), settings={"finetune_steps": 300, "lr": 2e-4})
    assert plan == {
        "stages": [
            stage("stage1", ["decoder.layers.0.fc1", "decoder.layers.0.fc2",
                             "decoder.layers.1.fc1", "decoder.layers.1.fc2"], 8, 256),
            # Embeddings in blocks of 8 (Embedding: "emb"), their projections in blocks of 4 (Linear: "emb").
            stage("stage2_block8_k256", ["decoder.embed_tokens.embeddings.0.0", "decoder.embed_tokens.embeddings.1.0"], 8, 256),
            stage("stage2_block4_k256", ["decoder.embed_tokens.embeddings.0.1", "decoder.embed_tokens.embeddings.1.1"], 4, 256),
            stage("stage3", attention(0) + attention(1), 4, 256),
        ],
        "finetune_steps": 300,
        "lr": 2e-4,
    }


def test_the_config_may_be_given_as_text_as_loaded_yaml_or_as_fairseqs_parsed_tuples():
    text = EXAMPLE_YAML.read_text()
    from_path = fc.fairseq_plan(str(EXAMPLE_YAML), FairseqShapedLm())
    assert fc.fairseq_plan(fc.parse_fairseq_config(text), FairseqShapedLm()) == from_path
    import yaml
    assert fc.fairseq_plan(yaml.safe_load(text), FairseqShapedLm()) == from_path
    # fairseq's parse_config_yaml form: (key, {value: ...}) tuples; its defaults are the example's.
    fairseq_parsed = {
        "n_centroids": {"Linear": ("in_features", {"*": 256}), "Embedding": ("embedding_dim", {"*": 256})},
        "block_sizes": {"Linear": ("fuzzy_name", {"fc": 8, "attn": 4, "emb": 4}), "Embedding": ("fuzzy_name", {"emb": 8})},
        "layers_to_quantize": fc.default_fairseq_config()["layers_to_quantize"],
    }
    assert fc.fairseq_plan(fairseq_parsed, FairseqShapedLm()) == from_path
    assert fc.fairseq_plan({}, FairseqShapedLm()) == from_path  # every key left out: fairseq's defaults


def test_reads_the_example_in_its_order_with_fairseqs_backslash_pairs():
    config = fc.read_fairseq_config(EXAMPLE_YAML)
    assert config["block_sizes"]["Linear"] == ("fuzzy_name", [("fc", 8), ("attn", 4), ("emb", 4)])
    assert config["n_centroids"]["Embedding"] == ("embedding_dim", [("*", 256)])
    assert config["layers_to_quantize"][0] == "decoder\\\\.layers\\\\.\\d+\\\\.fc[12]"


def test_attribute_keys_compare_the_attribute_as_python_prints_it():
    plan = fc.fairseq_plan(fc.parse_fairseq_config("""
n_centroids:
  Linear: {key: out_features, value: {8: 16, "*": 64}}
  Conv2d: {key: in_channels, value: {"*": 32}}
  Conv1d: {key: kernel_size, value: {"(3,)": 8}}
  Embedding: {key: num_embeddings, value: {32: 8}}
block_sizes:
  Linear: {key: in_features, value: {16: 4, "*": 8}}
  Conv2d: {key: kernel_size, value: {"(3, 3)": 9, "(1, 1)": 4}}
  Conv1d: {key: fuzzy_name, value: {seq: 16}}
  Embedding: {key: embedding_dim, value: {16: 2}}
layers_to_quantize:
  - conv
  - embed|fc_in|seq
"""), SmallMixed())
    assert plan["stages"] == [
        stage("stage1_block9_k32", ["conv3x3"], 9, 32),
        stage("stage1_block4_k32", ["conv1x1"], 4, 32),
        stage("stage2_block2_k8", ["embed"], 2, 8),
        stage("stage2_block16_k8", ["seq"], 16, 8),
        stage("stage2_block4_k64", ["fc_in16"], 4, 64),
        stage("stage2_block8_k16", ["fc_in32"], 8, 16),
    ]


TABLES = """
n_centroids: {Linear: {key: in_features, value: {"*": 16}}, Conv2d: {key: in_channels, value: {"*": 16}}}
block_sizes: {Linear: {key: in_features, value: {"*": 8}}, Conv2d: {key: in_channels, value: {"*": 4}}}
"""


def layers_of(yaml_text, model):
    return [s["layers"] for s in fc.fairseq_plan(fc.parse_fairseq_config(yaml_text), model)["stages"]]


def test_regexes_match_from_the_start_with_an_optional_module_prefix():
    assert layers_of(TABLES + "layers_to_quantize: [fc, conv1x1]", SmallMixed()) == [["fc_in16", "fc_in32"], ["conv1x1"]]
    assert layers_of(TABLES + r"layers_to_quantize: ['fc_in\d6$']", SmallMixed()) == [["fc_in16"]]
    wrapped = nn.Module()
    wrapped.module = SmallMixed()  # as nn.DataParallel wraps a model
    assert layers_of(TABLES + "layers_to_quantize: [fc_in32]", wrapped) == [["module.fc_in32"]]


def test_subclasses_of_linear_are_looked_up_as_linear():
    model = nn.Module()
    model.attn = nn.MultiheadAttention(16, 2)  # out_proj is a NonDynamicallyQuantizableLinear
    assert layers_of(TABLES + r"layers_to_quantize: ['attn\.out_proj']", model) == [["attn.out_proj"]]


def test_yaml_files_are_told_from_json_plans():
    assert fc.is_fairseq_config_path("a/b.yaml") and fc.is_fairseq_config_path(pathlib.Path("p.yml"))
    assert not fc.is_fairseq_config_path("plan.json")


@pytest.mark.parametrize("text, message", [
    ("n_centroids: {Linear: [unclosed", "'plan.yaml' is not valid YAML"),
    ("", "(it is empty)"),
    ("- just\n- a list", "must be a YAML map"),
    ("stages: []", "unknown key 'stages' (fairseq's keys are n_centroids, block_sizes, layers_to_quantize; "
                   "a qnoise plan with stages is a .json file)"),
    ("n_centroid: {}", "unknown key 'n_centroid'"),
    ("block_sizes: [8]", "block_sizes must map layer types"),
    ("block_sizes: {Linear: 8}", "block_sizes.Linear must be {key:"),
    ("block_sizes: {Linear: {value: {'*': 8}}}", "block_sizes.Linear needs a 'key'"),
    ("block_sizes: {Linear: {key: in_features}}", "block_sizes.Linear needs a 'value'"),
    ("block_sizes: {Linear: {key: in_features, value: {'*': 8}, values: 1}}", "block_sizes.Linear has no field 'values'"),
    ("block_sizes: {Linear: {key: in_features, value: {'*': eight}}}", "block_sizes.Linear.value.*: 'eight' is not a positive integer"),
    ("block_sizes: {Linear: {key: in_features, value: {'*': 0}}}", "'0' is not a positive integer"),
    ("n_centroids: {Linear: {key: in_features, value: {'*': 70000}}}", "n_centroids must be in [2, 65536], got 70000"),
    ("layers_to_quantize: []", "layers_to_quantize must be a non-empty list"),
    ("layers_to_quantize: fc", "layers_to_quantize must be a non-empty list"),
    ("layers_to_quantize: [fc, [x]]", "layers_to_quantize[1] must be a regex"),
])
def test_bad_files_are_errors_naming_the_problem(text, message):
    with pytest.raises(fc.FairseqConfigError) as error:
        fc.parse_fairseq_config(text, source="'plan.yaml'")
    assert message in str(error.value)
    assert str(error.value).startswith("'plan.yaml'")


def test_a_missing_file_is_an_error_naming_it():
    with pytest.raises(fc.FairseqConfigError, match="cannot read the fairseq quantization config '/nonexistent/plan.yaml'"):
        fc.read_fairseq_config("/nonexistent/plan.yaml")


LINEAR_ONLY = """
n_centroids: {Linear: {key: in_features, value: {"*": 16}}}
block_sizes: {Linear: {key: fuzzy_name, value: {fc: 8, proj: 4}}}
"""


@pytest.mark.parametrize("text, model, message", [
    (LINEAR_ONLY + "layers_to_quantize: [encoder]", FairseqShapedLm,
     "layers_to_quantize[0] 'encoder' matches no layer (a regex matches module names from their start); "
     "the model's layers with weights: decoder.layers.0.self_attn.q_proj"),
    (LINEAR_ONLY + r"layers_to_quantize: ['decoder\.(']", FairseqShapedLm, "is not a regular expression"),
    (LINEAR_ONLY + r"layers_to_quantize: ['decoder\.layers\.0\.self_attn']", FairseqShapedLm,
     "matches 'decoder.layers.0.self_attn_layer_norm', a LayerNorm: fairseq's iPQ and qnoise quantize Linear, "
     "Conv1d, Conv2d and Embedding layers only"),
    (LINEAR_ONLY + r"layers_to_quantize: ['decoder\.embed_tokens']", FairseqShapedLm,
     "block_sizes has no entry for Embedding (layer 'decoder.embed_tokens.embeddings.0.0'); it has: Linear"),
    (LINEAR_ONLY + r"layers_to_quantize: ['decoder\.layers\.\d+\.fc1', 'decoder\.layers\.1\.fc']", FairseqShapedLm,
     "matches 'decoder.layers.1.fc1', which layers_to_quantize[0] already quantizes"),
    (LINEAR_ONLY + r"layers_to_quantize: ['decoder\.embed_tokens\.embeddings\.0\.1']", FairseqShapedLm,
     "block_sizes.Linear: no fuzzy_name key is part of the layer name 'decoder.embed_tokens.embeddings.0.1' "
     'and no "*" default'),
    ("""
n_centroids: {Linear: {key: in_features, value: {32: 16}}}
block_sizes: {Linear: {key: in_features, value: {"*": 8}}}
layers_to_quantize: [fc_in]
""", SmallMixed, "n_centroids.Linear: no value for in_features=16 (layer 'fc_in16') and no \"*\" default"),
    ("""
n_centroids: {Conv2d: {key: kernel, value: {"*": 16}}}
block_sizes: {Conv2d: {key: in_channels, value: {"*": 8}}}
layers_to_quantize: [conv]
""", SmallMixed, "n_centroids.Conv2d: key 'kernel' is neither fuzzy_name nor an attribute of Conv2d"),
    ("block_sizes: {Linear: {key: in_features, value: {'*': 8}}}", SmallMixed,
     r"layers_to_quantize[0] 'decoder\.layers\.\d+\.fc[12]' matches no layer"),
])
def test_layers_the_config_does_not_fit_are_errors_naming_the_layer(text, model, message):
    with pytest.raises(fc.FairseqConfigError) as error:
        fc.fairseq_plan(fc.parse_fairseq_config(text), model())
    assert message in str(error.value)


def test_bad_arguments_are_errors():
    with pytest.raises(fc.FairseqConfigError, match="'stages' is not a plan setting"):
        fc.fairseq_plan(EXAMPLE_YAML, FairseqShapedLm(), settings={"stages": []})
    with pytest.raises(fc.FairseqConfigError, match="model must be a torch.nn.Module"):
        fc.fairseq_plan(EXAMPLE_YAML, "model")
    with pytest.raises(fc.FairseqConfigError, match="config must be a path or a dict"):
        fc.fairseq_plan(42, FairseqShapedLm())
