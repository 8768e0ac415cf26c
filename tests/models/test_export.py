"""Model versions in the repository: which directory export builds, and how a new fusion
version is published."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models import export, fusion
from models.reference import REPO_DIR


def test_version_dirs_are_the_names_triton_reads_as_versions(tmp_path: Path) -> None:
    for name in ("1", "2", "10", "007", ".staging-3-x", "abc"):
        (tmp_path / name).mkdir()
    (tmp_path / "3").write_text("a file, not a version")
    assert sorted(export.version_dirs(tmp_path)) == [1, 2, 10]
    assert export.version_dirs(tmp_path / "missing") == {}


def test_new_fusion_weights_are_published_as_a_new_version_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "weights"
    for version in fusion.weights_versions():
        weights.mkdir(exist_ok=True)
        shutil.copy2(fusion.weights_path(version), weights)
    repo = tmp_path / "repo"
    (repo / "fusion" / "2").mkdir(parents=True)
    shutil.copy2(REPO_DIR / "fusion" / "2" / "model.py", repo / "fusion" / "2")
    monkeypatch.setattr(fusion, "WEIGHTS_DIR", weights)
    lines: list[str] = []

    assert export.export_all(repo, models=["fusion"], log=lines.append) == ["fusion"]
    assert (repo / "fusion" / "2" / export.ONNX_FILE).is_file()
    assert export.export_all(repo, models=["fusion"], log=lines.append) == []
    assert lines[-1] == "fusion/2: up to date"

    fusion.save_weights(fusion.FusionModel(seed=3), fusion.weights_path(3, weights))
    assert export.export_all(repo, models=["fusion"], log=lines.append) == ["fusion"]
    assert lines[-1].endswith("published as a new version")
    version_dir = repo / "fusion" / "3"
    assert sorted(path.name for path in version_dir.iterdir()) == [
        "assets",
        "model.onnx",
        "model.py",
    ]
    # Assembled aside and renamed: nothing but the two versions is left in the model dir.
    assert sorted(path.name for path in (repo / "fusion").iterdir()) == ["2", "3"]


def test_a_version_directory_without_weights_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "weights"
    fusion.save_weights(fusion.FusionModel(), fusion.weights_path(2, weights))
    monkeypatch.setattr(fusion, "WEIGHTS_DIR", weights)
    (tmp_path / "repo" / "fusion" / "4").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="fusion/4 exists but its newest weights are v2"):
        export.export_all(tmp_path / "repo", models=["fusion"])
