"""`python -m load_tests chaos <scenario> [options]`: one summary line, and JSON with --out."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from load_tests.chaos.scenarios import SCENARIOS, ChaosOptions, run_scenario

# Scenario sizes for a quick run (the defaults are the full runs the README reports).
QUICK: dict[str, Any] = {
    "events": 400, "cycles": 2, "interval_s": 3.0, "outage_s": 6.0, "poison": 120,
    "grace_s": 30.0, "items": 60,
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m load_tests chaos", description=__doc__)
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    defaults = ChaosOptions()
    for f in fields(ChaosOptions):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)))
    parser.add_argument("--quick", action="store_true", help="small sizes (what CI runs)")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a temp dir)")
    return parser


def summary_line(result: dict[str, object]) -> str:
    keys = ("sent", "answered", "dead_lettered", "lost", "duplicated", "double_counted",
            "missing_from_state", "crashes", "malformed", "kinds", "malformed_dead_lettered",
            "items_missing", "sigterm_exit_s_median", "ready_again_s_median", "not_ready_after_s",
            "answers_resumed_s_after_triton_ready", "trending_double_counted",
            "topics_recreated", "offset_resets", "seen_violations", "workers")  # fmt: skip
    shown = " ".join(f"{k}={result[k]}" for k in keys if k in result)
    return f"chaos {result['scenario']}: {shown}"


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    opts = ChaosOptions(**(QUICK if args.quick else {}))
    for f in fields(ChaosOptions):
        value = getattr(args, f.name)
        if value is not None:
            setattr(opts, f.name, value)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
            workdir = (args.workdir / name) if args.workdir else Path(tmp)
            started = time.monotonic()
            result = asyncio.run(run_scenario(name, opts, workdir))
            result["wall_s"] = round(time.monotonic() - started, 1)
            result["options"] = vars(opts).copy()
        print(summary_line(result), flush=True)
        results.append(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = results[0] if len(results) == 1 else {"scenarios": results}
        args.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"report: {args.out}", file=sys.stderr)
    return 0
