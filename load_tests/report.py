"""Summary tables, the JSON document and the PNG charts of a run or a step sweep."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

Result = dict[str, Any]

_ROWS: list[tuple[str, str]] = [
    ("target rate /s", "target_rate"),
    ("achieved rate /s", "achieved_rate"),
    ("sent", "sent"),
    ("matched", "matched"),
    ("missing", "missing"),
    ("dlq", "dlq"),
    ("  bad events sent", "bad_sent"),
    ("  good events in dlq", "dlq_unexpected"),
    ("send errors", "send_errors"),
    ("response errors", "response_errors"),
    ("duplicates", "duplicates"),
    ("late (> grace)", "late"),
]
_LATENCY_ROWS = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999")]
_LATENCY_ROWS += [("max", "max"), ("mean", "mean")]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 100 else f"{value:.2f}"
    return str(value)


_HEADERS = {"floor": "floor (pipeline echo)", "raw_floor": "raw aiokafka echo"}


def cpu_ratios(results: dict[str, Result]) -> dict[str, float]:
    """Each system's CPU per event (its own process) over the raw aiokafka echo's."""
    raw = results.get("raw_floor", {}).get("cpu_ms_per_event", {}).get("system")
    if not raw:
        return {}
    return {
        name: round(result["cpu_ms_per_event"]["system"] / raw, 2)
        for name, result in results.items()
        if name != "raw_floor" and result.get("cpu_ms_per_event", {}).get("system") is not None
    }


def repeated_cpu(runs: list[dict[str, Result]]) -> dict[str, Any]:
    """Runs of the same systems (`--repeat`): each system's CPU ms per event and its ratio
    to the raw echo's in each run, with their medians, lowest and highest."""
    systems = [name for name in runs[0] if name != "raw_floor"]
    out: dict[str, Any] = {"runs": len(runs), "cpu_ms_per_event": {}, "cpu_vs_raw_echo": {}}
    for name in [*systems, "raw_floor"]:
        values = [r[name]["cpu_ms_per_event"]["system"] for r in runs if name in r]
        out["cpu_ms_per_event"][name] = _spread(values)
    for name in systems:
        ratios = [cpu_ratios(r).get(name) for r in runs]
        out["cpu_vs_raw_echo"][name] = _spread([x for x in ratios if x is not None])
    return out


def _spread(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"each": [], "median": None, "min": None, "max": None}
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {"each": values, "median": round(median, 3), "min": ordered[0], "max": ordered[-1]}


def repeats_table(repeats: dict[str, Any]) -> str:
    """One line per system: CPU per event and the ratio to the raw echo over the runs."""
    lines = [f"over {repeats['runs']} runs (median, lowest-highest):"]
    for name, cpu in repeats["cpu_ms_per_event"].items():
        line = f"  {_HEADERS.get(name, name)}: {_cell(cpu['median'])} cpu ms/event"
        line += f" ({_cell(cpu['min'])}-{_cell(cpu['max'])})"
        ratio = repeats["cpu_vs_raw_echo"].get(name)
        if ratio and ratio["median"] is not None:
            line += f", {_cell(ratio['median'])}x the raw echo"
            line += f" ({_cell(ratio['min'])}-{_cell(ratio['max'])})"
        lines.append(line)
    return "\n".join(lines)


def summary_table(results: dict[str, Result]) -> str:
    """One column per system ("worker", "floor"), latencies from intended send times."""
    names = list(results)
    header = ["", *(_HEADERS.get(n, n) for n in names)]
    rows = [header]
    rows += [[label, *(_cell(results[n][key]) for n in names)] for label, key in _ROWS]
    rows += [
        [f"latency {label} ms", *(_cell(results[n]["latency_ms"][key]) for n in names)]
        for label, key in _LATENCY_ROWS
    ]
    rows.append(["send lag p99 ms", *(_cell(results[n]["send_lag_ms"]["p99"]) for n in names)])
    processes = ("system", "triton", "broker", "generator")
    rows += [
        [
            f"cpu ms/event {'echo or worker' if name == 'system' else name}",
            *(_cell(results[n].get("cpu_ms_per_event", {}).get(name)) for n in names),
        ]
        for name in processes
        if any(name in results[n].get("cpu_ms_per_event", {}) for n in names)
    ]
    ratios = cpu_ratios(results)
    if ratios:
        rows.append(["cpu vs raw echo", *(_cell(ratios.get(n)) for n in names)])
    stages = sorted({stage for n in names for stage in results[n].get("stages_ms", {})})
    rows += [
        [
            f"{stage} (mean/batch)" if stage == "batch_size" else f"stage {stage} ms/batch",
            *(_cell(results[n].get("stages_ms", {}).get(stage)) for n in names),
        ]
        for stage in stages
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    problems = [
        f"!! {n}: {r['target_problem']}" for n, r in results.items() if r.get("target_problem")
    ]
    return "\n".join(lines + problems)


def step_table(steps: list[dict[str, Any]]) -> str:
    lines = [f"{'rate/s':>7} {'achieved':>9} {'p50 ms':>8} {'p99 ms':>8} {'floor p99':>9}  verdict"]
    for step in steps:
        subject = step["result"]
        floor = step.get("floor")
        floor_p99 = floor["latency_ms"]["p99"] if floor else None
        lines.append(
            f"{step['rate']:>7.0f} {subject['achieved_rate']:>9.1f} "
            f"{_cell(subject['latency_ms']['p50']):>8} {_cell(subject['latency_ms']['p99']):>8} "
            f"{_cell(floor_p99):>9}  {step['failure'] or 'ok'}"
        )
    return "\n".join(lines)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def _pyplot() -> Any:
    import matplotlib  # imported late: only --png needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_numbers(ax: Any) -> None:
    """Log-scale axes read better as 20, 50, 100 ms than as 2x10^1."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


_STYLE = {"worker": {"color": "tab:blue"}, "floor": {"color": "tab:gray", "linestyle": "--"}}


def write_run_png(path: Path, results: dict[str, Result]) -> None:
    """Latency over time (per sampling interval), lag over time, and the percentile spectrum."""
    plt = _pyplot()
    fig, (ax_time, ax_lag, ax_spec) = plt.subplots(3, 1, figsize=(10, 12))
    for name, result in results.items():
        style = _STYLE.get(name, {})
        points = [p for p in result["timeline"] if p["p99_ms"] is not None]
        t = [p["t"] for p in points]
        ax_time.plot(t, [p["p99_ms"] for p in points], label=f"{name} p99", **style)
        ax_time.plot(t, [p["p50_ms"] for p in points], label=f"{name} p50", alpha=0.6, **style)
        ax_time.plot(t, [p["max_ms"] for p in points], label=f"{name} max", alpha=0.3, **style)
        ax_lag.plot(
            [p["t"] for p in result["timeline"]],
            [p["lag"] for p in result["timeline"]],
            label=f"{name} lag (sent - answered)",
            **style,
        )
        spectrum = [(pct, ms) for pct, ms in result["spectrum_ms"] if pct < 100.0]
        ax_spec.plot(
            [1.0 / (1.0 - pct / 100.0) for pct, _ in spectrum],
            [ms for _, ms in spectrum],
            label=f"{name} (max {result['latency_ms']['max']} ms)",
            **style,
        )
    first = next(iter(results.values()))
    ax_time.set(
        title=f"latency from intended send time, per {_interval(first):.1f} s interval",
        xlabel="seconds since start",
        ylabel="ms",
        yscale="log",
    )
    ax_lag.set(title="consumer lag", xlabel="seconds since start", ylabel="events in flight")
    ax_spec.set(title="percentile spectrum", xscale="log", yscale="log", ylabel="ms")
    ticks = [2, 10, 100, 1000, 10000]
    ax_spec.set_xticks(ticks, [f"{100 * (1 - 1 / x):g}%" for x in ticks])
    _plain_numbers(ax_time)
    _plain_numbers(ax_spec)
    for ax in (ax_time, ax_lag, ax_spec):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(
        f"{first['target_rate']:.0f} events/s target for {first['duration_s']:.0f} s: "
        + ", ".join(f"{n} p99 {r['latency_ms']['p99']} ms" for n, r in results.items())
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _interval(result: Result) -> float:
    times = [p["t"] for p in result["timeline"]]
    return (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else math.nan


def write_step_png(path: Path, steps: list[dict[str, Any]], budget_p99_ms: float) -> None:
    """p50/p99 against the offered rate, the floor's next to the system's, and the budget."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 6))
    rates = [s["rate"] for s in steps]
    subject = steps[0]["result"]["label"] if steps else "worker"
    for key, alpha in (("p99", 1.0), ("p50", 0.5)):
        ys = [s["result"]["latency_ms"][key] for s in steps]
        ax.plot(rates, ys, marker="o", alpha=alpha, label=f"{subject} {key}", **_STYLE["worker"])
        if all(s.get("floor") for s in steps):
            floor = [s["floor"]["latency_ms"][key] for s in steps]
            ax.plot(rates, floor, marker="o", alpha=alpha, label=f"floor {key}", **_STYLE["floor"])
    ax.axhline(budget_p99_ms, color="tab:red", label=f"p99 budget {budget_p99_ms:g} ms")
    ax.set(xlabel="target events/s", ylabel="ms", yscale="log", title="latency by offered rate")
    _plain_numbers(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
