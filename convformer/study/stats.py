"""From the runs to numbers and verdicts: the metrics per stage (mean, min, max, 95 % t-interval over seeds)
and one verdict per claim of the usual answer, decided by one stated rule.

The rule (`compare`): with at least 3 seeds on each side, A beats B when A's worst seed beats B's best (the
ranges do not overlap). For 3 seeds against 3 that happens by chance with probability 1 / C(6, 3) = 0.05 in
one direction (an exact one-sided permutation test), so "supported" means that at p = 0.05. "Not supported"
means the opposite separation (or, for "placement matters", every placement within `EQUIVALENT` of the others
with overlapping ranges); everything else is "inconclusive on Shapes". With fewer than 3 seeds every verdict is
inconclusive, and `lean` says which way the means point.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from .protocol import PLACEMENTS, Protocol

__all__ = ["CLAIMS", "EQUIVALENT", "compare", "metrics", "summary", "verdicts"]

FUSIONS = ("early", "mid", "late", "cnn", "vit")
EQUIVALENT = 0.02   # accuracies closer than 2 points count as equal (for "placement matters")
# claim id -> (the usual answer's claim, how it is tested here, the published result at scale)
CLAIMS: dict[str, tuple[str, str, str]] = {
    "early_faster": (
        "Early fusion converges faster.",
        "early needs fewer steps to 80 % validation accuracy than mid and late (if every run gets there; "
        "else: higher validation accuracy half-way through)",
        "Xiao et al. 2021 found a conv stem (early fusion) converges faster and trains stably with SGD as well as "
        "AdamW compared with a patchify ViT at ImageNet scale; they did not compare it with mid or late fusion."),
    "early_loses_local": (
        "Early fusion may lose simple local features to over-abstraction.",
        "early's final accuracy is below both models that keep a full convolutional path (cnn and late)",
        "Park & Kim 2022 show attention acts as a low-pass filter and convolutions as high-pass ones, so "
        "stacking only attention after a stem discards high-frequency detail; at ImageNet scale early-conv "
        "ViTs (Xiao et al. 2021) nevertheless match or beat pure ViTs."),
    "mid_placement": (
        "Mid fusion must place the fusion point well, or information flows poorly.",
        "final accuracy with attention after conv stage 1, 2 or 3 differs (best and worst placements separate)",
        "Dai et al. 2021 (CoAtNet) found the layout matters at ImageNet scale: C-C-T-T generalises best, "
        "attention earlier (C-T-T-T) or later (C-C-C-T) is worse."),
    "late_best": (
        "Late fusion may give the best final accuracy.",
        "late's final accuracy is above every other stage's (its gain over its better branch alone is reported)",
        "At ImageNet scale the strongest hybrids interleave conv and attention (CoAtNet, Dai et al. 2021) "
        "rather than merge two networks at the decision level; ensembles of different architectures gain "
        "over their members but not over a good single hybrid of the same size."),
    "late_misses_interaction": (
        "Late fusion misses interaction in the middle layers.",
        "mid fusion (the stages interact in the middle) ends above late fusion at matched parameters",
        "d'Ascoli et al. 2021 (ConViT) and Dai et al. 2021 (CoAtNet) gain most from letting convolutional and "
        "attention features interact inside the network, especially with little data."),
}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def summary(values: Iterable[float | None]) -> dict[str, Any]:
    """mean, min, max, n and the 95 % t-interval half-width (None with one value) of the values given."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"n": 0, "mean": None, "min": None, "max": None, "ci95": None, "values": []}
    ci = T95.get(len(v) - 1, 1.96) * statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else None
    return {"n": len(v), "mean": statistics.fmean(v), "min": min(v), "max": max(v), "ci95": ci, "values": v}


def _pick(runs: list[dict], model: str, optimizer: str = "adamw", size: int | None = None) -> dict[int, dict]:
    return {r["seed"]: r for r in runs if r["model"] == model and r["optimizer"] == optimizer
            and (size is None or r["train_size"] == size)}


def _per_seed(a: dict[int, dict], b: dict[int, dict], f: Callable[[dict, dict], float]) -> list[float]:
    return [f(a[s], b[s]) for s in sorted(set(a) & set(b))]


def metrics(runs: list[dict], p: Protocol) -> dict[str, Any]:
    """Every metric of the study, per stage (or per placement / branch), each a `summary` over seeds."""
    full, sizes = p.full_size, sorted(p.sizes)
    smallest = sizes[0]
    out: dict[str, Any] = {}
    for f in FUSIONS:
        main = _pick(runs, f, size=full)
        censored = [r["steps_to"] for r in main.values()]
        out[f] = {
            "final_acc": summary(r["test_acc"] for r in main.values()),
            "steps_to": summary(censored), "seconds_to": summary(r["seconds_to"] for r in main.values()),
            "reached": sum(x is not None for x in censored),
            "half_acc": summary(r["half_acc"] for r in main.values()),
            "seconds": summary(r["seconds"] for r in main.values()),
            "adamw_minus_sgd": summary(_per_seed(main, _pick(runs, f, "sgd", full),
                                                 lambda a, b: a["test_acc"] - b["test_acc"])),
            "noise_drop": summary(r["test_acc"] - r["noisy_acc"] for r in main.values()),
            "gap": {str(n): summary(r["train_acc"] - r["test_acc"] for r in _pick(runs, f, size=n).values())
                    for n in (smallest, full)},
            "by_size": {str(n): summary(r["test_acc"] for r in _pick(runs, f, size=n).values()) for n in sizes},
        }
    late, branches = _pick(runs, "late", size=full), {b: _pick(runs, b, size=full) for b in ("late/cnn", "late/vit")}
    means = {b: summary(r["test_acc"] for r in v.values())["mean"] for b, v in branches.items()}
    better = max((b for b in means if means[b] is not None), key=lambda b: means[b], default=None)
    out["late_branches"] = {b: summary(r["test_acc"] for r in v.values()) for b, v in branches.items()}
    out["late_branches"]["better"] = better
    out["late_branches"]["gain"] = summary(_per_seed(late, branches[better], lambda a, b: a["test_acc"] - b["test_acc"])
                                           if better else [])
    out["placement"] = {str(k): summary(r["test_acc"] for r in _pick(runs, m, size=full).values())
                        for k, m in PLACEMENTS.items()}
    return out


def compare(a: dict[str, Any], b: dict[str, Any], higher_is_better: bool = True) -> str:
    """"better" / "worse" when the ranges (min-max over seeds) of summaries `a` and `b` do not overlap and each
    has >= 3 seeds, "overlap" when they do, "few seeds" when either has fewer than 3."""
    if min(a["n"], b["n"]) < 3:
        return "few seeds"
    (lo_a, hi_a), (lo_b, hi_b) = ((x["min"], x["max"]) if higher_is_better else (-x["max"], -x["min"]) for x in (a, b))
    return "better" if lo_a > hi_b else "worse" if hi_a < lo_b else "overlap"


def _lean(a: dict, b: dict, higher_is_better: bool = True) -> str | None:
    if a["mean"] is None or b["mean"] is None:
        return None
    return "better" if (a["mean"] > b["mean"]) == higher_is_better else "worse"


def _against(a: dict, others: dict[str, dict], higher_is_better: bool = True) -> tuple[str, str | None, dict]:
    """(verdict, lean, outcome per other) for "a beats every one of `others`"."""
    outcome = {k: compare(a, o, higher_is_better) for k, o in others.items()}
    leans = {k: _lean(a, o, higher_is_better) for k, o in others.items()}
    if all(v == "better" for v in outcome.values()):
        verdict = "supported"
    elif any(v == "worse" for v in outcome.values()):
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    lean = None if None in leans.values() else "supported" if all(v == "better" for v in leans.values()) \
        else "not supported"
    return verdict, lean, outcome


def _convergence(m: dict, stage: str) -> tuple[str, dict, bool]:
    """The convergence measure: steps to the threshold if every compared run reached it, else the validation
    accuracy half-way (higher: faster)."""
    all_reached = all(0 < m[f]["reached"] == m[f]["final_acc"]["n"] for f in ("early", "mid", "late"))
    return ("steps_to", m[stage]["steps_to"], False) if all_reached else ("half_acc", m[stage]["half_acc"], True)


def verdicts(m: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per claim of CLAIMS: id, verdict, lean, the measure used and the outcome of each comparison."""
    out = []
    name, early, hib = _convergence(m, "early")
    others = {f: _convergence(m, f)[1] for f in ("mid", "late")}
    out.append(("early_faster", name, *_against(early, others, hib)))
    acc = {f: m[f]["final_acc"] for f in FUSIONS}
    out.append(("early_loses_local", "final_acc (early lower)",
                *_against(acc["early"], {f: acc[f] for f in ("cnn", "late")}, higher_is_better=False)))
    out.append(("mid_placement", "final_acc by placement", *_placement(m["placement"])))
    out.append(("late_best", "final_acc", *_against(acc["late"], {f: acc[f] for f in FUSIONS if f != "late"})))
    v, lean, o = _against(acc["mid"], {"late": acc["late"]})
    out.append(("late_misses_interaction", "final_acc (mid above late)", v, lean, o))
    return [{"id": i, "measure": meas, "verdict": v, "lean": lean, "outcome": o} for i, meas, v, lean, o in out]


def _placement(pl: dict[str, dict]) -> tuple[str, str | None, dict]:
    """"Placement matters": supported if the best and the worst placement separate; not supported if every
    placement is within EQUIVALENT of the others and their ranges overlap."""
    filled = {k: s for k, s in pl.items() if s["n"]}
    if len(filled) < 2:
        return "inconclusive", None, {}
    best = max(filled, key=lambda k: filled[k]["mean"])
    worst = min(filled, key=lambda k: filled[k]["mean"])
    outcome = {f"{best}>{worst}": compare(filled[best], filled[worst])}
    spread = filled[best]["mean"] - filled[worst]["mean"]
    lean = "supported" if spread >= EQUIVALENT else "not supported"
    if outcome[f"{best}>{worst}"] == "better":
        return "supported", lean, outcome
    overlapping = all(compare(a, b) == "overlap" for a in filled.values() for b in filled.values() if a is not b)
    if overlapping and spread < EQUIVALENT:
        return "not supported", lean, outcome
    return "inconclusive", lean, outcome
