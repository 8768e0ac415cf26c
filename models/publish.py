"""A new fusion version for a running tritonserver, without touching the project's models.

`scratch_repository` lays out a repository whose `fusion` is a copy (the other models are
links to the project's); `publish_new_fusion` saves new weights and exports them there as a
new version directory, which a server polling the repository (`--model-control-mode=poll`)
swaps in. Used by the upgrade test and `python -m load_tests upgrade`. The caller points
`models.fusion.WEIGHTS_DIR` at the returned weights directory first: the export reads it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models import export, fusion
from models.reference import REPO_DIR

FUSION = "fusion"


def scratch_repository(target: Path, source: Path = REPO_DIR) -> tuple[Path, Path]:
    """-> (the repository, its fusion weights directory), under `target`."""
    export.export_all(source)
    repo, weights = target / "repo", target / "weights"
    repo.mkdir(parents=True)
    weights.mkdir()
    for model in sorted(p for p in source.iterdir() if (p / "config.pbtxt").exists()):
        if model.name == FUSION:
            shutil.copytree(model, repo / model.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (repo / model.name).symlink_to(model.resolve(), target_is_directory=True)
    for path in fusion.WEIGHTS_DIR.glob("fusion-v*.pt"):
        shutil.copy2(path, weights)
    return repo, weights


def publish_new_fusion(repo: Path) -> int:
    """Export a new (seeded, untrained) fusion version into `repo`; returns its number."""
    version = max(export.version_dirs(repo / FUSION)) + 1
    fusion.save_weights(fusion.FusionModel(seed=version).eval(), fusion.weights_path(version))
    if export.export_all(repo, models=[FUSION]) != [FUSION]:
        raise RuntimeError(f"fusion version {version} was not published into {repo}")
    return version
