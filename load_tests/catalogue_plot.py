"""The catalogue benchmark's figures as a PNG: search CPU per query and the longest stall of
an index build, by catalogue size.

    python -m load_tests.catalogue_plot [results/catalogue.json] [results/catalogue.png]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def _series(
    runs: Sequence[dict[str, Any]],
    quantization: str,
    mode: str,
    vectors: str = "isotropic",
    items_process: bool = False,
) -> list[dict[str, Any]]:
    """The first run of each size with these vectors, quantisation, build mode and items
    process (runs before the `vectors` field all drew isotropic clusters, and before the
    `items_process` field all kept the items in the benchmark's process)."""
    chosen: dict[int, dict[str, Any]] = {}
    for r in runs:
        if (
            r.get("vectors", "isotropic") == vectors
            and r["quantization"] == quantization
            and r["index_build"]["mode"] == mode
            and r.get("items_process", False) == items_process
        ):
            chosen.setdefault(r["items"], r)
    return [chosen[size] for size in sorted(chosen)]


def plot(runs: Sequence[dict[str, Any]], path: Path) -> None:
    fig, (search, stall) = plt.subplots(1, 2, figsize=(12, 4.6))
    for vectors, quantization in (
        ("fusion", "turbo4"),
        ("isotropic", "int8"),
        ("isotropic", "none"),
    ):
        rows = _series(runs, quantization, "another process", vectors)
        sizes = [r["items"] for r in rows]
        if (vectors, quantization) == ("isotropic", "int8"):
            search.plot(
                sizes, [r["exact"]["cpu_ms_per_query"] for r in rows], "o-", label="exact scan"
            )
        search.plot(
            sizes, [r["indexed"]["cpu_ms_per_query"] for r in rows], "o-",
            label=f"HNSW, {quantization}, {vectors} vectors",
        )  # fmt: skip
    for vectors, quantization, mode, items_process in (
        ("isotropic", "int8", "another process", False),
        ("isotropic", "int8", "in place", False),
        ("fusion", "turbo4", "another process", False),
        ("fusion", "turbo4", "another process", True),
    ):
        rows = _series(runs, quantization, mode, vectors, items_process)
        where = f"{'in ' if mode != 'in place' else ''}{mode}"
        stall.plot(
            [r["items"] for r in rows],
            [r["index_build"]["longest_stall_ms"] for r in rows],
            "o-",
            label=f"index built {where}, {quantization}"
            + (" (store flushed first)" if vectors == "fusion" else "")
            + (", ITEMS_PROCESS" if items_process else ""),
        )
    for axes, title, unit in (
        (search, "search CPU per query right after a build (k = 50)", "CPU ms per query"),
        (stall, "longest stall of the process during an index build", "ms"),
    ):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("items in the catalogue")
        axes.set_ylabel(unit)
        axes.set_title(title, fontsize=10)
        axes.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    source = Path(args[0] if args else "results/catalogue.json")
    target = Path(args[1] if len(args) > 1 else "results/catalogue.png")
    plot(json.loads(source.read_text())["runs"], target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
