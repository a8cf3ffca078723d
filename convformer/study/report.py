"""The results document as text: a Markdown table of the metrics per stage and the verdicts (English; the app
words them in the page's language from the same document)."""
from __future__ import annotations

from typing import Any

__all__ = ["fmt", "markdown"]

FUSIONS = ("early", "mid", "late", "cnn", "vit")


def fmt(s: dict[str, Any] | None, scale: float = 100, digits: int = 1, unit: str = "") -> str:
    """"mean [min, max]" of a summary (a single value alone), "-" when empty."""
    if not s or not s.get("n"):
        return "-"
    f = f"{{:.{digits}f}}"
    mean = f.format(s["mean"] * scale) + unit
    if s["n"] == 1:
        return mean
    return f"{mean} [{f.format(s['min'] * scale)}, {f.format(s['max'] * scale)}]"


def _steps(m: dict, p: dict) -> str:
    s = m["steps_to"]
    n = m["final_acc"]["n"]
    if not m["reached"]:
        return f"> {p['steps']} (0/{n})"
    return f"{fmt(s, 1, 0)} ({m['reached']}/{n})"


def markdown(doc: dict[str, Any]) -> str:
    """The table, the late / placement lines and the verdicts, with how the study ran."""
    p, m, w = doc["protocol"], doc["metrics"], doc["where"]
    sizes = sorted(p["sizes"])
    small, full = str(sizes[0]), str(p["full_size"])
    params = {r["model"]: r for r in doc["models"]}
    head = ["stage", "params", "MFLOPs", f"steps to {p['threshold']:.0%}", "s to it", "final acc %",
            "AdamW - SGD", f"gap {int(small) // 1000}k", f"gap {int(full) // 1000}k",
            *(f"acc {n / 1000:g}k ({100 * n / p['full_size']:.0f} %)" for n in sizes), "noise drop"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in FUSIONS:
        s = m[f]
        cells = [f, f"{params[f]['params'] / 1e3:.0f}k", f"{params[f]['flops'] / 1e6:.1f}", _steps(s, p),
                 fmt(s["seconds_to"], 1, 1), fmt(s["final_acc"]), fmt(s["adamw_minus_sgd"]), fmt(s["gap"][small]),
                 fmt(s["gap"][full]), *(fmt(s["by_size"][str(n)]) for n in sizes), fmt(s["noise_drop"])]
        rows.append("| " + " | ".join(cells) + " |")
    lb = m["late_branches"]
    lines = [f"Study `{p['name']}`: {doc['runs_done']}/{doc['runs_planned']} runs"
             + ("" if doc["complete"] else " (**partial**: stopped before the end)")
             + f", seeds {', '.join(map(str, p['seeds']))}, {p['steps']} steps of {p['batch_size']} images at "
             f"32 px; {w['device']}, {w['threads']} threads, {w['wall_s']:.0f} s wall, load average "
             f"{w['load_before']} before, {w['load_after']} after.", "",
             "Values: mean [min, max] over seeds, accuracies in %, gaps in points.", "", *rows, "",
             f"Late fusion: {fmt(m['late']['final_acc'])} %; its branches alone: cnn {fmt(lb['late/cnn'])} %, "
             f"vit {fmt(lb['late/vit'])} %; gain over the better ({lb['better']}): {fmt(lb['gain'])} points.",
             "Mid fusion placement (attention after conv stage 1 / 2 / 3): "
             + " / ".join(f"{fmt(m['placement'][k])} %" for k in ("1", "2", "3")) + ".", "",
             "| claim | verdict | tested as | at scale |", "|---|---|---|---|"]
    for c in doc["claims"]:
        lean = f" (means lean: {c['lean']})" if c["verdict"] == "inconclusive" and c["lean"] else ""
        lines.append(f"| {c['claim']} | **{c['verdict']}**{lean} | {c['test']} | {c['at_scale']} |")
    return "\n".join(lines)
