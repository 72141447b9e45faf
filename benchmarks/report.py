"""Markdown table and PNG chart of a benchmark result document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

UNITS = {
    "rps": "req/s",
    "msgs_per_s": "msg/s",
    "round_trips_per_s": "rt/s",
    "mb_per_s": "MB/s",
    "p50_ms": "ms",
    "p99_ms": "ms",
    "mean_ms": "ms",
    "rss_per_conn_kib": "KiB/conn",
    "server_faults_per_call": "faults/call",
    "server_rss_before_mib": "MiB",
    "server_rss_open_mib": "MiB",
    "failed": "",
}


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "—"
    status = result.get("status", "")
    if status != "ok":
        return str(status).split(":")[0]  # "n/a", "error", "unavailable"
    metric = result["primary"]
    median = result["metrics"][metric]["median"]
    ratio = result.get("ratio_to_grpcio")
    return _num(median) + (f" ({ratio:.2f}x)" if ratio is not None else "")


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    workloads = list(doc["workloads"])
    lines = [
        f"# h2mesh benchmark ({doc['mode']})",
        "",
        f"{m['date']} · {m['cpu_model']} · {m['cores']} cores · Python {m['python']} · "
        f"pinning: {m['pinning']} · {doc['repetitions']} repetitions after a warm-up "
        f"(median shown) · run took {doc['duration_s']} s",
        "",
        "Primary metric per workload, median; in brackets the ratio to grpcio measured in "
        "the same run (higher is better).",
        "",
        "| system | "
        + " | ".join(f"{w} ({UNITS[doc['workloads'][w]['primary']]})" for w in workloads)
        + " |",
        "|---|" + "---:|" * len(workloads),
    ]
    for entry in doc["systems"].values():
        if entry.get("status") != "ok":
            lines.append(f"| {entry['label']} | " + " | ".join("—" for _ in workloads) + " |")
            continue
        cells = [_cell(entry["workloads"].get(w)) for w in workloads]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    server_only = doc.get("server_only") or {}
    ceilings = sorted({c for row in server_only.values() for c in row["ratio_to"]})
    if server_only and ceilings:
        lines += [
            "",
            "## Server only (h2load): ratios to the ceilings",
            "",
            "Each system's h2load req/s divided by that of the system named in the column "
            "(same run).",
            "",
            "| system | req/s | " + " | ".join(f"/ {c}" for c in ceilings) + " |",
            "|---|---:|" + "---:|" * len(ceilings),
        ]
        for name, row in server_only.items():
            cells = [f"{row['ratio_to'][c]:.2f}" if c in row["ratio_to"] else "—" for c in ceilings]
            lines.append(f"| {name} | {_num(row['rps'])} | " + " | ".join(cells) + " |")
    lines += ["", "## Details", "", "Median [min - max] of every metric.", ""]
    for w in workloads:
        lines += [f"### {w}", "", f"Parameters: `{doc['workloads'][w]['params']}`", ""]
        for name, entry in doc["systems"].items():
            result = entry.get("workloads", {}).get(w)
            if result is None:
                continue
            if result.get("status") != "ok":
                lines.append(f"- **{name}**: {result.get('status')}")
                continue
            parts = [
                f"{k} {_num(v['median'])} [{_num(v['min'])} - {_num(v['max'])}] "
                f"{UNITS.get(k, '')}".rstrip()
                for k, v in result["metrics"].items()
            ]
            lines.append(f"- **{name}**: " + "; ".join(parts))
        lines.append("")
    problems = [
        f"- **{name}**: {entry['status']}"
        for name, entry in doc["systems"].items()
        if entry.get("status") != "ok"
    ]
    if problems:
        lines += ["## Systems that did not run", "", *problems, ""]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    lines += ["## Versions", "", versions, ""]
    return "\n".join(lines)


def chart(doc: dict[str, Any], path: Path) -> Path | None:
    """A grouped bar chart of every system's ratio to grpcio; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    workloads = list(doc["workloads"])
    systems = [
        (name, entry)
        for name, entry in doc["systems"].items()
        if entry.get("status") == "ok" and name != doc["baseline"]
    ]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(workloads) + 3), 5), dpi=110)
    width = 0.8 / max(1, len(systems))
    for i, (_, entry) in enumerate(systems):
        xs, ys = [], []
        for j, w in enumerate(workloads):
            ratio = entry["workloads"].get(w, {}).get("ratio_to_grpcio")
            if ratio is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(ratio)
        ax.bar(xs, ys, width, label=entry["label"])
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--", label="grpcio = 1")
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)), workloads, rotation=20)
    ax.set_ylabel("throughput ratio to grpcio (log scale)")
    m = doc["machine"]
    ax.set_title(f"h2mesh benchmark ({doc['mode']}), {m['cpu_model']}, {m['date']}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
