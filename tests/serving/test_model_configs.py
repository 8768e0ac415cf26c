"""Every triton_repo/*/config.pbtxt, parsed with Triton's own protobuf schema, against the
tensor names and shapes worker/triton.py and worker/triton_models.py (the models calling
each other) rely on."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

import worker.triton as t
import worker.triton_models as m
from models import fusion
from models.export import version_dirs

REPO_DIR = Path(__file__).resolve().parents[2] / "triton_repo"
MODELS_DIR = REPO_DIR.parent / "models"
CONFIG_PATHS = sorted(REPO_DIR.glob("*/config.pbtxt"))

STRING, FP32 = pb.DataType.Value("TYPE_STRING"), pb.DataType.Value("TYPE_FP32")
D = t.EMBEDDING_DIM
# model -> (inputs, outputs), each {tensor name: (data type, dims without the batch dim)}
Signature = dict[str, tuple[int, list[int]]]
EXPECTED: dict[str, tuple[Signature, Signature]] = {
    t.ITEM_MODEL: (
        {
            t.ITEM_MODEL_INPUT_TEXT: (STRING, [1]),
            t.ITEM_MODEL_INPUT_IMAGE: (STRING, [1]),
            t.ITEM_MODEL_INPUT_AUDIO: (STRING, [1]),
        },
        {t.ITEM_MODEL_OUTPUT_VECTOR: (FP32, [D]), t.ITEM_MODEL_OUTPUT_ERROR: (STRING, [1])},
    ),
    t.USER_MODEL: (
        {
            t.USER_MODEL_INPUT_VECTORS: (FP32, [-1, D]),
            t.USER_MODEL_INPUT_WEIGHTS: (FP32, [-1]),
            t.USER_MODEL_INPUT_AGES: (FP32, [-1]),
        },
        {t.USER_MODEL_OUTPUT_VECTOR: (FP32, [D])},
    ),
    m.TEXT_MODEL: ({m.TEXT_MODEL_INPUT: (STRING, [1])}, {m.TEXT_MODEL_OUTPUT: (FP32, [384])}),
    m.IMAGE_MODEL: (
        {m.IMAGE_MODEL_INPUT: (STRING, [1])},
        {
            m.IMAGE_MODEL_OUTPUT_EMBEDDING: (FP32, [1280]),
            m.IMAGE_MODEL_OUTPUT_LOGITS: (FP32, [1000]),
            m.IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING: (FP32, [384]),
            m.IMAGE_MODEL_OUTPUT_ERROR: (STRING, [1]),
        },
    ),
    m.AUDIO_MODEL: (
        {m.AUDIO_MODEL_INPUT: (STRING, [1])},
        {
            m.AUDIO_MODEL_OUTPUT_EMBEDDING: (FP32, [512]),
            m.AUDIO_MODEL_OUTPUT_ERROR: (STRING, [1]),
        },
    ),
    m.FUSION_MODEL: (
        {
            m.FUSION_MODEL_INPUT_TEXT: (FP32, [384]),
            m.FUSION_MODEL_INPUT_IMAGE_TEXT: (FP32, [384]),
            m.FUSION_MODEL_INPUT_IMAGE: (FP32, [1280]),
            m.FUSION_MODEL_INPUT_AUDIO: (FP32, [512]),
            m.FUSION_MODEL_INPUT_MASK: (FP32, [3]),
        },
        {m.FUSION_MODEL_OUTPUT: (FP32, [D])},
    ),
}
# Import name -> the requirements.txt entry that provides it inside the Triton container.
PROVIDED_BY = {
    "numpy": "numpy",
    "onnxruntime": "onnxruntime-gpu",
    "PIL": "pillow",
    "tokenizers": "tokenizers",
}


def load_config(path: Path) -> pb.ModelConfig:
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def signature(tensors: list[pb.ModelInput] | list[pb.ModelOutput]) -> Signature:
    return {tensor.name: (tensor.data_type, list(tensor.dims)) for tensor in tensors}


def test_repository_holds_exactly_the_expected_models() -> None:
    assert sorted(path.parent.name for path in CONFIG_PATHS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda path: path.parent.name)
def test_config_is_explicit_and_batched(path: Path) -> None:
    config = load_config(path)
    assert config.name == path.parent.name
    assert config.backend == "python"
    versions = version_dirs(path.parent)
    assert versions and (versions[max(versions)] / "model.py").is_file()
    assert config.max_batch_size > 0
    assert config.HasField("dynamic_batching")
    # A short queue window: batching should cost hundreds of microseconds, not milliseconds.
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 1000
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.version_policy.latest.num_versions == 1
    # KIND_GPU fails to load without a GPU; onnxruntime picks CUDA by itself instead.
    kinds = {group.kind for group in config.instance_group}
    assert kinds == {pb.ModelInstanceGroup.Kind.Value("KIND_CPU")}


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda path: path.parent.name)
def test_tensors_match_the_client_constants(path: Path) -> None:
    config = load_config(path)
    inputs, outputs = EXPECTED[config.name]
    assert signature(list(config.input)) == inputs
    assert signature(list(config.output)) == outputs


def test_item_embedder_names_the_models_it_calls() -> None:
    """The client reports these models' versions in every recommendation's model_version."""
    config = load_config(REPO_DIR / t.ITEM_MODEL / "config.pbtxt")
    composed = config.parameters[t.ITEM_MODEL_COMPOSED_PARAMETER].string_value.split(",")
    assert composed == [m.TEXT_MODEL, m.IMAGE_MODEL, m.AUDIO_MODEL, m.FUSION_MODEL]
    source = (REPO_DIR / t.ITEM_MODEL / "1" / "model.py").read_text()
    assert all(f'"{model}"' in source for model in composed)


def test_every_fusion_version_has_committed_weights() -> None:
    versions = version_dirs(REPO_DIR / m.FUSION_MODEL)
    assert max(versions) == fusion.weights_versions()[-1]
    for version in versions:
        assert fusion.weights_path(version).is_file(), version


def test_item_embedder_batches_fit_the_models_it_calls() -> None:
    configs = {path.parent.name: load_config(path) for path in CONFIG_PATHS}
    limit = configs[t.ITEM_MODEL].max_batch_size
    for callee in (m.TEXT_MODEL, m.IMAGE_MODEL, m.AUDIO_MODEL, m.FUSION_MODEL):
        assert configs[callee].max_batch_size >= limit, callee


def test_onnx_models_read_their_thread_count_from_the_config() -> None:
    for name in (m.TEXT_MODEL, m.IMAGE_MODEL, m.AUDIO_MODEL, m.FUSION_MODEL):
        config = load_config(REPO_DIR / name / "config.pbtxt")
        threads = int(config.parameters["intra_op_threads"].string_value)
        assert 1 <= threads <= 2, name


def test_only_the_text_encoder_lets_its_threads_spin() -> None:
    for name in (m.TEXT_MODEL, m.IMAGE_MODEL, m.AUDIO_MODEL, m.FUSION_MODEL, t.USER_MODEL):
        config = load_config(REPO_DIR / name / "config.pbtxt")
        spinning = config.parameters["allow_spinning"].string_value or "0"
        assert spinning == ("1" if name == m.TEXT_MODEL else "0"), name


def test_user_encoder_half_life_is_a_week() -> None:
    config = load_config(REPO_DIR / t.USER_MODEL / "config.pbtxt")
    assert float(config.parameters["half_life_seconds"].string_value) == 604800.0


def test_user_encoder_declares_the_item_space_its_weights_were_trained_on() -> None:
    config = load_config(REPO_DIR / t.USER_MODEL / "config.pbtxt")
    card = json.loads((MODELS_DIR / "weights" / "user_encoder.json").read_text())
    trained_on = card["item_model_version"].removesuffix(f"+{t.USER_MODEL}:1")
    assert config.parameters[t.USER_MODEL_ITEM_SPACE_PARAMETER].string_value == trained_on


def test_model_code_imports_only_what_requirements_txt_installs() -> None:
    """Inside the NGC container the model code can import the standard library, Triton's
    backend utils, modules next to it and requirements.txt; never this project."""
    required = {
        line.split("=")[0].split(">")[0].split("<")[0].strip()
        for line in (REPO_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for source in sorted(REPO_DIR.glob("*/1/*.py")):
        siblings = {path.stem for path in source.parent.glob("*.py")}
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in (name.split(".")[0] for name in names):
                if name in sys.stdlib_module_names or name in siblings:
                    continue
                if name == "triton_python_backend_utils":
                    continue
                assert PROVIDED_BY.get(name) in required, f"{source}: imports {name}"
