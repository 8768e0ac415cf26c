"""The replay evaluation as a PNG: metrics per method, and NDCG@k over the held-out events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def plot(report: dict[str, Any], path: Path) -> None:
    methods = report["methods"]
    names = list(methods)
    k = report["protocol"]["k"]
    metrics = [f"recall@{k}", f"precision@{k}", f"f1@{k}", f"ndcg@{k}", "mrr", "auc", "coverage"]
    # Reports written before a metric existed lack it: plot what they have.
    metrics = [m for m in metrics if all(methods[name].get(m) is not None for name in names)]
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(15, 4.8))
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        values = [methods[name][metric] for metric in metrics]
        positions = [m + n * width for m in range(len(metrics))]
        bars.bar(positions, values, width, label=name)
    bars.set_xticks([m + 0.4 - width / 2 for m in range(len(metrics))], metrics)
    bars.set_yscale("log")
    bars.set_title(f"held-out MovieLens-100K ratings (n={methods[names[0]]['n_events']})")
    bars.legend(fontsize=8)
    for name in names:
        curve = report["curves"].get(name) or []
        if curve:
            curves.plot([x for x, _ in curve], [y for _, y in curve], label=name)
    curves.set_xlabel("held-out events replayed")
    curves.set_ylabel(f"NDCG@{k} so far")
    curves.set_title("prequential NDCG, in replay order")
    curves.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
