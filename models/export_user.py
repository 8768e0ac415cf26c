"""Export the trained sequence user encoder to ONNX for Triton's `user_encoder`.

    python -m models.export_user [--repo triton_repo] [--force]

Reads models/weights/user_encoder.pt and writes `<repo>/user_encoder/1/model.onnx` plus
`assets/reference_items.npy` (the training items' vectors) and `assets/export.json` (the
input fingerprint, the sequence length the model was trained for and the model card). The
graph is checked against the PyTorch module with onnxruntime on shapes other than the
traced ones before it is kept; a re-run with unchanged inputs does nothing.
`models.export.export_all` is to call `export_user_encoder` (generated files are gitignored,
like the other encoders').
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from models import user_model

REPO_DIR = Path(__file__).resolve().parents[1] / "triton_repo"
MODEL_DIR = Path("user_encoder") / "1"
ONNX_FILE = "model.onnx"
MANIFEST_FILE = Path("assets") / "export.json"
REFERENCE_FILE = Path("assets") / "reference_items.npy"
INPUT_NAMES = ("vectors", "weights", "gaps_s", "lengths")
OUTPUT_NAME = "user_vector"
OPSET = 17


def _fingerprint(weights: Path) -> str:
    digest = hashlib.sha256()
    digest.update(f"torch={torch.__version__} onnx={onnx.__version__} opset={OPSET}".encode())
    for path in (weights, Path(__file__), Path(user_model.__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _inputs(batch: int, length: int, dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(batch, length, dim, generator=generator)
    vectors = vectors / vectors.norm(dim=-1, keepdim=True)
    weights = torch.rand(batch, length, generator=generator) * 4 - 2
    gaps = torch.rand(batch, length, generator=generator) * 1e6
    lengths = torch.randint(0, length + 1, (batch,), generator=generator)
    lengths[0] = length  # a full row, and (batch > 1) rows of other lengths, 0 included
    if batch > 1:
        lengths[1] = 0
    return vectors, weights, gaps, lengths


def _up_to_date(version_dir: Path, fingerprint: str) -> bool:
    manifest = version_dir / MANIFEST_FILE
    return (
        manifest.is_file()
        and (version_dir / ONNX_FILE).is_file()
        and (version_dir / REFERENCE_FILE).is_file()
        and json.loads(manifest.read_text()).get("fingerprint") == fingerprint
    )


def _export_onnx(model: user_model.SequenceUserEncoder, path: Path) -> None:
    config = model.config
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated but exports this in a second; the check
        # below runs the graph on other shapes, so a size frozen into it would fail there.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            model,
            _inputs(2, config.max_len, config.item_dim, seed=0),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                **{name: {0: "batch", 1: "length"} for name in INPUT_NAMES[:3]},
                "lengths": {0: "batch"},
                OUTPUT_NAME: {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def _max_error(model: user_model.SequenceUserEncoder, path: Path) -> float:
    """onnxruntime against PyTorch on other shapes than the export's: the largest abs diff."""
    config = model.config
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    error = 0.0
    for batch, length in ((5, config.max_len), (3, config.max_len // 2 + 1), (1, 1)):
        check = _inputs(batch, length, config.item_dim, seed=batch)
        got = session.run(None, dict(zip(INPUT_NAMES, (t.numpy() for t in check), strict=True)))
        with torch.no_grad():
            expected = model(*check).numpy()
        error = max(error, float(np.abs(got[0] - expected).max()))
    return error


def export_user_encoder(
    repo: Path = REPO_DIR,
    *,
    weights: Path = user_model.WEIGHTS_FILE,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> bool:
    """Build the ONNX graph when missing or stale; True if it was (re)built."""
    version_dir = repo / MODEL_DIR
    manifest = version_dir / MANIFEST_FILE
    fingerprint = _fingerprint(weights)
    if not force and _up_to_date(version_dir, fingerprint):
        log("user_encoder: up to date")
        return False
    started = time.perf_counter()
    model = user_model.load(weights)
    config = model.config
    tmp = version_dir / (ONNX_FILE + ".tmp")
    _export_onnx(model, tmp)
    error = _max_error(model, tmp)
    if error > 1e-4:
        tmp.unlink()
        raise RuntimeError(f"user_encoder: onnxruntime differs from PyTorch by {error:.2e}")
    tmp.replace(version_dir / ONNX_FILE)
    manifest.parent.mkdir(exist_ok=True)
    np.save(version_dir / REFERENCE_FILE, user_model.load_reference_items(weights).numpy())
    card = json.loads(weights.with_suffix(".json").read_text())
    manifest.write_text(
        json.dumps(
            {
                "fingerprint": fingerprint,
                "max_abs_error": error,
                "max_len": config.max_len,
                "card": card,
            },
            indent=2,
        )
        + "\n"
    )
    log(
        f"user_encoder: wrote {ONNX_FILE} ({(version_dir / ONNX_FILE).stat().st_size / 1e6:.1f} "
        f"MB) in {time.perf_counter() - started:.1f} s (onnxruntime vs torch max abs diff "
        f"{error:.1e})"
    )
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.export_user", description=__doc__)
    parser.add_argument("--repo", type=Path, default=REPO_DIR, help="model repository")
    parser.add_argument("--weights", type=Path, default=user_model.WEIGHTS_FILE)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    export_user_encoder(args.repo, weights=args.weights, force=args.force)


if __name__ == "__main__":
    main()
