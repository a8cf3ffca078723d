"""The study's results as one figure with error bars (min-max over seeds; a single seed: no bar)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["figure", "save"]

FUSIONS = ("early", "mid", "late", "cnn", "vit")
COLOURS = {"early": "#d97706", "mid": "#9333ea", "late": "#16a34a", "cnn": "#64748b", "vit": "#dc2626"}


def _bar(ax, names, summaries, title, ylabel, *, scale=100.0, colours=None):
    """Bars at the means, error bars from min to max."""
    means = [(s["mean"] or 0) * scale if s.get("n") else 0 for s in summaries]
    err = [[(s["mean"] - s["min"]) * scale if s.get("n", 0) > 1 else 0 for s in summaries],
           [(s["max"] - s["mean"]) * scale if s.get("n", 0) > 1 else 0 for s in summaries]]
    ax.bar(names, means, yerr=err, capsize=3, color=[(colours or COLOURS).get(n, "#94a3b8") for n in names])
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", alpha=0.3)


def figure(doc: dict[str, Any], labels: dict[str, str] | None = None):
    """A matplotlib Figure (no pyplot) of the metrics; `labels` replaces the English titles (the app's language)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    t = {"final": "final accuracy", "steps": "steps to 80 % (reached only)",
         "half": "val. accuracy half-way\n(no run reached 80 %)", "sizes": "accuracy vs training images",
         "gap": "train - test gap", "sgd": "AdamW - SGD", "noise": "drop under high-frequency noise",
         "late": "late vs its branches alone", "placement": "mid: attention after conv stage", "acc": "accuracy %",
         "points": "points", "steps_axis": "steps", "images": "training images", **(labels or {})}
    m, p = doc["metrics"], doc["protocol"]
    fig = Figure(figsize=(13, 7), dpi=90, layout="constrained")
    axs = fig.subplots(2, 4).ravel()
    _bar(axs[0], FUSIONS, [m[f]["final_acc"] for f in FUSIONS], t["final"], t["acc"])
    if any(m[f]["steps_to"]["n"] for f in FUSIONS):
        _bar(axs[1], FUSIONS, [m[f]["steps_to"] for f in FUSIONS], t["steps"], t["steps_axis"], scale=1)
    else:  # what the convergence verdict is decided on when no run reaches 80 %
        _bar(axs[1], FUSIONS, [m[f]["half_acc"] for f in FUSIONS], t["half"], t["acc"])
    for f in FUSIONS:
        sizes = sorted(int(n) for n in m[f]["by_size"])
        ss = [m[f]["by_size"][str(n)] for n in sizes]
        pts = [(n, s) for n, s in zip(sizes, ss) if s["n"]]
        if pts:
            axs[2].errorbar([n for n, _ in pts], [100 * s["mean"] for _, s in pts],
                            yerr=[[100 * (s["mean"] - s["min"]) for _, s in pts],
                                  [100 * (s["max"] - s["mean"]) for _, s in pts]],
                            marker="o", capsize=3, color=COLOURS[f], label=f)
    axs[2].set(xscale="log", title=t["sizes"], xlabel=t["images"], ylabel=t["acc"])
    axs[2].legend(fontsize=7)
    axs[2].grid(alpha=0.3)
    gaps = sorted(m["early"]["gap"], key=int)
    names = [f"{f}\n{int(n) // 1000}k" for f in FUSIONS for n in gaps]
    _bar(axs[3], names, [m[f]["gap"][n] for f in FUSIONS for n in gaps], t["gap"], t["points"],
         colours={nm: COLOURS[nm.split("\n")[0]] for nm in names})
    axs[3].tick_params(axis="x", labelsize=6)
    _bar(axs[4], FUSIONS, [m[f]["adamw_minus_sgd"] for f in FUSIONS], t["sgd"], t["points"])
    _bar(axs[5], FUSIONS, [m[f]["noise_drop"] for f in FUSIONS], t["noise"], t["points"])
    lb = m["late_branches"]
    _bar(axs[6], ["late", "late/cnn", "late/vit"], [m["late"]["final_acc"], lb["late/cnn"], lb["late/vit"]],
         t["late"], t["acc"], colours={"late": COLOURS["late"], "late/cnn": COLOURS["cnn"], "late/vit": COLOURS["vit"]})
    _bar(axs[7], ["1", "2", "3"], [m["placement"][k] for k in ("1", "2", "3")], t["placement"], t["acc"],
         colours={k: COLOURS["mid"] for k in "123"})
    fig.suptitle(f"{p['name']}: {doc['runs_done']}/{doc['runs_planned']} runs, seeds {list(p['seeds'])}"
                 + ("" if doc["complete"] else " (partial)") + "; bars: mean, whiskers: min-max over seeds")
    return fig


def save(doc: dict[str, Any], path: str | Path) -> Path:
    figure(doc).savefig(path)
    return Path(path)
