"""The results document as text: a Markdown table of the metrics per stage and the verdicts. English here; the
app words the same cells and the claims in the page's language (`columns` gives each header's key and values)."""
from __future__ import annotations

from typing import Any

__all__ = ["cells", "columns", "fmt", "markdown"]

FUSIONS = ("early", "mid", "late", "cnn", "vit")
ENGLISH = {"stage": "stage", "params": "params", "mflops": "MFLOPs", "steps_to": "steps to {pct} %",
           "seconds_to": "s to {pct} %", "final": "final acc %", "sgd": "AdamW - SGD", "gap": "gap {k}k",
           "acc_at": "acc {k}k ({pct} %)", "noise": "noise drop"}


def fmt(s: dict[str, Any] | None, scale: float = 100, digits: int = 1) -> str:
    """"mean [min, max]" of a summary (a single value alone), "-" when empty."""
    if not s or not s.get("n"):
        return "-"
    f = f"{{:.{digits}f}}"
    mean = f.format(s["mean"] * scale)
    return mean if s["n"] == 1 else f"{mean} [{f.format(s['min'] * scale)}, {f.format(s['max'] * scale)}]"


def columns(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The table's headers as (key of ENGLISH, values)."""
    p = doc["protocol"]
    sizes = sorted(p["sizes"])
    pct = f"{p['threshold'] * 100:.0f}"
    return [("stage", {}), ("params", {}), ("mflops", {}), ("steps_to", {"pct": pct}), ("seconds_to", {"pct": pct}),
            ("final", {}), ("sgd", {}), *(("gap", {"k": f"{n / 1000:g}"}) for n in (sizes[0], p["full_size"])),
            *(("acc_at", {"k": f"{n / 1000:g}", "pct": f"{100 * n / p['full_size']:.0f}"}) for n in sizes),
            ("noise", {})]


def _steps(m: dict, p: dict) -> str:
    n = m["final_acc"]["n"]
    if not n:
        return "-"
    if not m["reached"]:
        return f"> {p['steps']} (0/{n})"
    return f"{fmt(m['steps_to'], 1, 0)} ({m['reached']}/{n})"


def cells(doc: dict[str, Any]) -> list[list[str]]:
    """One row of cells per stage, in `columns` order."""
    p, m = doc["protocol"], doc["metrics"]
    sizes = sorted(p["sizes"])
    small, full = str(sizes[0]), str(p["full_size"])
    models = {r["model"]: r for r in doc["models"]}
    return [[f, f"{models[f]['params'] / 1e3:.0f}k", f"{models[f]['flops'] / 1e6:.1f}", _steps(m[f], p),
             fmt(m[f]["seconds_to"], 1, 1), fmt(m[f]["final_acc"]), fmt(m[f]["adamw_minus_sgd"]),
             fmt(m[f]["gap"][small]), fmt(m[f]["gap"][full]), *(fmt(m[f]["by_size"][str(n)]) for n in sizes),
             fmt(m[f]["noise_drop"])] for f in FUSIONS]


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def _threads(where: dict[str, Any]) -> str:
    """", 2 threads" or ", 2 processes x 1 thread" (a study run with --workers)."""
    threads, workers = where.get("threads"), where.get("workers") or 1
    if not threads:
        return ""
    unit = "thread" if threads == 1 else "threads"
    return f", {workers} processes x {threads} {unit}" if workers > 1 else f", {threads} {unit}"


def markdown(doc: dict[str, Any]) -> str:
    """The table, the late / placement lines and the verdicts, with how the study ran."""
    p, m, w = doc["protocol"], doc["metrics"], doc["where"]
    head = [ENGLISH[k].format(**v) for k, v in columns(doc)]
    lb = m["late_branches"]
    lines = [f"Study `{p['name']}`: {doc['runs_done']}/{doc['runs_planned']} runs"
             + ("" if doc["complete"] else " (**partial**: stopped before the end)")
             + f", seeds {', '.join(map(str, p['seeds']))}, {p['steps']} steps of {p['batch_size']} images at "
             f"32 px; {w['device']}" + _threads(w) + f", {w['wall_s']:.0f} s of wall time, load average "
             f"{w['load_before']} before, {w['load_after']} after." + (f" ({w['note']})" if w.get("note") else ""), "",
             "Values: mean [min, max] over seeds; accuracies in %, gaps and drops in points.", "",
             table(head, cells(doc)), "",
             f"Late fusion: {fmt(m['late']['final_acc'])} %; its branches alone: cnn {fmt(lb['late/cnn'])} %, "
             f"vit {fmt(lb['late/vit'])} %; gain over the better ({lb['better']}): {fmt(lb['gain'])} points.",
             "Mid fusion, attention after conv stage 1 / 2 / 3: "
             + " / ".join(f"{fmt(m['placement'][k])} %" for k in ("1", "2", "3")) + ".", "",
             "| claim | verdict | tested as | at scale |", "|---|---|---|---|"]
    for c in doc["claims"]:
        lean = f" (means lean: {c['lean']})" if c["verdict"] == "inconclusive" and c["lean"] else ""
        lines.append(f"| {c['claim']} | **{c['verdict']}**{lean} | {c['test']} | {c['at_scale']} |")
    return "\n".join(lines)
