"""Latency-versus-throughput plots from concurrency sweeps (matplotlib, PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS = (
    ("median_ttft_ms", "median TTFT (ms)", "ttft_vs_throughput.png"),
    ("median_tpot_ms", "median TPOT (ms)", "tpot_vs_throughput.png"),
    ("median_e2el_ms", "median end-to-end latency (ms)", "e2el_vs_throughput.png"),
)


def sweep_plots(sweeps: dict[str, list[dict[str, Any]]], out_dir: Path, title: str = "") -> list[Path]:
    """One PNG per latency metric: x = output tokens/s, y = latency, a line per target, points labelled with
    their concurrency. ``sweeps`` maps a target name to its results in concurrency order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, ylabel, filename in PLOTS:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, points in sweeps.items():
            pts = [p for p in points if p.get("completed")]
            if not pts:
                continue
            xs = [p["output_throughput"] for p in pts]
            ys = [p[key] for p in pts]
            ax.plot(xs, ys, marker="o", label=name)
            for x, y, p in zip(xs, ys, pts, strict=True):
                ax.annotate(f"c={p.get('max_concurrency')}", (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)  # fmt: skip
        ax.set_xlabel("output throughput (tokens/s)")
        ax.set_ylabel(ylabel)
        ax.set_title(title or ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
