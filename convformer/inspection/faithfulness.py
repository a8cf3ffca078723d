"""Which map to trust: scores for every map method of a model, on the same images.

* Deletion and insertion (Petsiuk et al. 2018, "RISE"): the explained class's probability as the pixels a map
  ranks highest are removed (replaced by the baseline) or added (onto the baseline) in `steps` equal steps; the
  area under each curve over the share of pixels changed (deletion: lower is better; insertion: higher).
  Maps are resized bilinearly to the image and ranked per pixel, ties in raster order. Baseline: "mean", the
  normalised zero (the preprocessing's mean colour), or "blur" (a Gaussian blur of the image, Petsiuk's
  insertion canvas). The unperturbed and the all-baseline image are shared by every method (one forward each).
* Pointing game (Zhang et al. 2016): whether the map's maximum lies on the object (mask > 0.5); mask IoU as
  Chefer et al. 2021: the map thresholded at its mean against the object mask.
* Sanity check (Adebayo et al. 2018, cascading randomisation): the weights are re-drawn layer group by layer
  group from the head down; after each group, the Spearman rank correlation of each image's map with its
  original; the score is the mean over the cascade (a map that does not change is not explaining the model).
  Weight matrices / kernels are re-drawn from a normal of their own mean and std; biases and norms stay.

Methods: "relevance" (Chefer et al. 2021), "rollout" (Abnar & Zuidema 2020), "attention" (the last block's
attention received, heads averaged), "gradcam" (Selvaraju et al. 2017, the last conv layer of each branch;
late fusion: the CNN branch), "random" (a fixed random map: the floor every method should beat).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import Inspection, inspect, viz

METHODS = ("relevance", "rollout", "attention", "gradcam", "random")
BASELINES = ("mean", "blur")


def method_maps(model: nn.Module, images: torch.Tensor, target: int | torch.Tensor | str = "pred",
                methods: tuple[str, ...] = METHODS) -> tuple[dict[str, torch.Tensor], Inspection]:
    """Every map method the model has, from ONE inspection pass: {method: (B, h, w) in [0, 1]}, and the pass
    (its `relevance_class` / `cam_class` is the explained class)."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"methods={sorted(unknown)} are not map methods: expected some of {', '.join(METHODS)}")
    result = inspect(model, images, cam_class=target if "gradcam" in methods else None, flops=False,
                     relevance_class=target)
    maps: dict[str, torch.Tensor] = {}
    blocks = result.rollout_blocks()
    if blocks:
        grid = result.grid_of(blocks[-1])
        if "relevance" in methods:
            maps["relevance"] = next(iter(result.relevance.values()))
        if "rollout" in methods:
            maps["rollout"] = rollout_maps([result.attentions[b] for b in blocks], (grid.h, grid.w), grid.prefix)
        if "attention" in methods:
            last = result.attentions[blocks[-1]]  # (B, heads, N, N)
            maps["attention"] = _scale(torch.from_numpy(np.stack([viz.head_maps(
                a, (grid.h, grid.w), grid.prefix).mean(0) for a in last])))
    if "gradcam" in methods and result.cam:
        maps["gradcam"] = next(iter(result.cam.values())).detach().cpu()
    if "random" in methods:
        shape = next(iter(maps.values())).shape if maps else (len(images), 8, 8)
        maps["random"] = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    if result.relevance_class is None:
        result.relevance_class = _target(result.logits, target)
    return {m: maps[m].float() for m in methods if m in maps}, result


def rollout_maps(attentions: list[torch.Tensor], grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """`viz.rollout_map` (mean over heads, no discarding) for a batch at once: (B, heads, N, N) per block ->
    (B, h, w) in [0, 1]."""
    a = attentions[0]
    eye = torch.eye(a.shape[-1], dtype=torch.float64)
    joint = eye.expand(len(a), -1, -1)
    for attn in attentions:
        fused = 0.5 * attn.double().cpu().mean(1) + 0.5 * eye
        joint = (fused / fused.sum(-1, keepdim=True)) @ joint
    rows = joint[:, 0] if prefix else joint.mean(1)
    return _scale(torch.from_numpy(viz.tokens_to_grid(rows.float(), grid, prefix)))


def _scale(maps: torch.Tensor) -> torch.Tensor:
    """(B, h, w) min-max scaled per map; a constant map becomes zeros."""
    lo, hi = maps.flatten(1).amin(1)[:, None, None], maps.flatten(1).amax(1)[:, None, None]
    return torch.where(hi > lo, (maps - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(maps))


def _target(logits: torch.Tensor, target: int | torch.Tensor | str) -> torch.Tensor:
    if isinstance(target, str):
        return logits.argmax(-1).cpu()
    return torch.as_tensor(target).long().expand(len(logits)).cpu()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H, W), bilinear (align_corners=False): a map as large as the image."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


# ---- deletion and insertion ----------------------------------------------------------------------------
@dataclass
class Curves:
    """Deletion and insertion curves of one method: the class probability after each step."""
    fractions: np.ndarray  # (S + 1,) share of pixels removed / inserted, 0 .. 1
    deletion: np.ndarray   # (B, S + 1), starts at the image's probability
    insertion: np.ndarray  # (B, S + 1), starts at the baseline's probability

    @property
    def deletion_auc(self) -> np.ndarray:
        return np.trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        return np.trapezoid(self.insertion, self.fractions, axis=1)


def baseline_of(images: torch.Tensor, baseline: str | torch.Tensor = "mean") -> torch.Tensor:
    """The image every pixel is removed to: "mean" (normalised zero), "blur" (Gaussian, sigma = 1/20 of the
    short side) or a tensor of the images' shape."""
    if isinstance(baseline, torch.Tensor):
        return baseline.to(images).expand_as(images)
    if baseline == "mean":
        return torch.zeros_like(images)
    if baseline == "blur":
        from torchvision.transforms.functional import gaussian_blur
        sigma = max(min(images.shape[-2:]) / 20, 0.5)
        return gaussian_blur(images, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
    raise ValueError(f"baseline={baseline!r} is not allowed: expected one of {', '.join(BASELINES)} or a tensor")


def ranks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H * W): each pixel's place in the map's order, most relevant 0 (ties in raster order)."""
    order = torch.argsort(-upsample(maps, size).flatten(1), dim=1, stable=True)
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
    return out


def probabilities(model: nn.Module, images: torch.Tensor, target: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The softmax probability of `target` (B,) for each image (B, C, H, W), in batches, without autograd."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            logits = model(images[i:i + batch])
            out.append(logits.float().softmax(-1).gather(1, target[i:i + batch, None].to(logits.device))[:, 0])
    return torch.cat(out).cpu()


def perturbation_curves(model: nn.Module, images: torch.Tensor, maps: dict[str, torch.Tensor],
                        target: torch.Tensor, *, steps: int = 8, baseline: str | torch.Tensor = "mean",
                        batch: int = 256) -> dict[str, Curves]:
    """Deletion and insertion curves for every method's maps on `images` (B, C, H, W), batched: every
    perturbed image of every method goes through the model in batches of `batch`."""
    if steps < 1:
        raise ValueError(f"steps={steps}; expected at least 1")
    b, _, h, w = images.shape
    base = baseline_of(images, baseline)
    counts = torch.round(torch.linspace(0, h * w, steps + 1)).long()  # pixels changed after each step
    inner = counts[1:-1]
    ends = probabilities(model, torch.cat([images, base]), torch.cat([target, target]), batch)
    full, empty = ends[:b], ends[b:]
    out = {}
    for method, m in maps.items():
        changed = (ranks(m, (h, w))[:, None, :] < inner[None, :, None]).view(b, -1, 1, h, w)  # (B, S-1, 1, H, W)
        x, x0 = images[:, None], base[:, None]
        perturbed = torch.cat([torch.where(changed, x0, x), torch.where(changed, x, x0)], 1).flatten(0, 1)
        p = probabilities(model, perturbed, target.repeat_interleave(2 * len(inner)), batch).view(b, 2, -1)
        deletion = torch.cat([full[:, None], p[:, 0], empty[:, None]], 1)
        insertion = torch.cat([empty[:, None], p[:, 1], full[:, None]], 1)
        out[method] = Curves((counts.double() / (h * w)).numpy(), deletion.numpy(), insertion.numpy())
    return out


# ---- ROAD: remove and debias (Rong et al. 2022) --------------------------------------------------------
# noisy linear imputation: a removed pixel is the weighted mean of its 8 neighbours (4-neighbours 1/6, diagonal
# 1/12), removed neighbours solved jointly, plus Gaussian noise; the ROAD authors' imputer
_NEIGHBOURS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12), (0, -1, 1 / 6), (-1, -1, 1 / 12),
               (1, 0, 1 / 6), (-1, 0, 1 / 6))


def impute(image: torch.Tensor, keep: np.ndarray, noise: float = 0.0, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """`image` (C, H, W) with the pixels where `keep` (H, W) is False filled by noisy linear imputation."""
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import spsolve
    h, w = keep.shape
    flat_keep, flat = keep.ravel(), image.reshape(image.shape[0], -1).double().numpy()
    missing = np.flatnonzero(~flat_keep)
    if not len(missing):
        return image.clone()
    index = np.full(h * w, -1)
    index[missing] = np.arange(len(missing))
    row, col = np.divmod(missing, w)
    weight_sum, b = np.ones(len(missing)), np.zeros((len(missing), flat.shape[0]))
    rows, cols, vals = [], [], []
    for dr, dc, weight in _NEIGHBOURS:
        r, c = row + dr, col + dc
        valid = (r >= 0) & (c >= 0) & (r < h) & (c < w)
        weight_sum[~valid] -= weight
        ids, nb = np.flatnonzero(valid), r[valid] * w + c[valid]
        known = flat_keep[nb]
        b[ids[known]] -= weight * flat[:, nb[known]].T
        rows.append(ids[~known]), cols.append(index[nb[~known]]), vals.append(np.full((~known).sum(), weight))
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(len(missing),) * 2) + diags(-weight_sum)
    solved = torch.from_numpy(spsolve(a.tocsc(), b).reshape(len(missing), -1)).to(image.dtype)
    out = image.reshape(image.shape[0], -1).clone()
    out[:, missing] = solved.T + noise * torch.randn(solved.T.shape, generator=generator).to(image.dtype)
    return out.reshape(image.shape)


def road(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
         percentiles: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90), *, most_relevant_first: bool = True,
         noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """ROAD (Rong et al. 2022): the change of the class probability (B, P) when the pixels at or above each
    percentile of the map (most relevant first; else below it, least relevant first) are imputed, not blanked
    (`impute`), so the removal itself tells the model less. As pytorch-grad-cam's ROAD metrics (mean over
    percentiles: their *Average)."""
    b, _, h, w = images.shape
    up = upsample(maps, (h, w)).numpy()
    up = up if most_relevant_first else 1 - up
    generator = torch.Generator().manual_seed(seed)
    perturbed = [impute(images[i].cpu(), up[i] < np.percentile(up[i], p), noise, generator)
                 for p in percentiles for i in range(b)]
    before = probabilities(model, images, target)
    after = probabilities(model, torch.stack(perturbed).to(images.device), target.repeat(len(percentiles)))
    return (after.view(len(percentiles), b) - before).T.numpy()


# ---- the object: pointing game and mask IoU ------------------------------------------------------------
def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each map's maximum (resized to the mask, first in raster order) lies on the object."""
    up = upsample(maps, tuple(masks.shape[-2:])).flatten(1)
    return masks.flatten(1).gather(1, up.argmax(1, keepdim=True))[:, 0] > 0.5


def mask_iou(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) IoU of each map, thresholded at its mean (resized to the mask), with the object (mask > 0.5)."""
    up = upsample(maps, tuple(masks.shape[-2:])).flatten(1)
    pred, true = up > up.mean(1, keepdim=True), masks.flatten(1) > 0.5
    union = (pred | true).sum(1)
    return torch.where(union > 0, (pred & true).sum(1) / union.clamp_min(1), torch.zeros(len(up)))


# ---- the sanity check: cascading randomisation ---------------------------------------------------------
def cascade(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layer groups re-drawn one after another, head first: the shape table's rows, reversed, that hold a
    weight matrix or kernel."""
    if hasattr(model, "branches"):
        from .convformer_engine import steps
        rows = [(name, module) for name, module, _ in steps(model)]
    else:
        from .timm_engine import steps as timm_steps
        rows = [(name, module) for name, module in timm_steps(model) if module is not None]
    return [(name, m) for name, m in reversed(rows) if any(p.ndim >= 2 for p in m.parameters())]


def randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every weight matrix / kernel of `module` from a normal of its own mean and std, in place."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim >= 2:
                noise = torch.randn(p.shape, generator=generator).to(p)
                p.copy_(p.mean() + p.std() * noise)


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(B,) Spearman rank correlation of each pair of maps (B, h, w); 0 where either map is constant."""
    from scipy.stats import spearmanr
    out = []
    for x, y in zip(a.flatten(1).numpy(), b.flatten(1).numpy()):
        out.append(0.0 if np.ptp(x) == 0 or np.ptp(y) == 0 else float(spearmanr(x, y).statistic))
    return np.asarray(out)


def sanity_check(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                 methods: tuple[str, ...] = METHODS, seed: int = 0) -> dict[str, np.ndarray]:
    """{method: (G,)} the mean Spearman correlation of the maps with the original after each of the G cascade
    steps (head first). The model itself is untouched (a copy is randomised)."""
    original, _ = method_maps(model, images, target, methods)
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {m: [] for m in original}
    for _, module in cascade(copied):
        randomise(module, generator)
        maps, _ = method_maps(copied, images, target, tuple(original))
        for m in original:
            out[m].append(float(spearman(original[m], maps[m]).mean()))
    return {m: np.asarray(v) for m, v in out.items()}


# ---- everything for a set of images --------------------------------------------------------------------
@dataclass
class Score:
    """One method's scores over a set of images (NaN where not measured, e.g. no object masks)."""
    pointing: float    # pointing-game accuracy
    iou: float         # mean mask IoU
    deletion: float    # mean deletion AUC (lower is better)
    insertion: float   # mean insertion AUC (higher is better)
    sanity: float      # mean Spearman over the cascade (lower: the map depends on the model)
    cascade: list[float] = field(default_factory=list)  # the Spearman after each cascade step


def evaluate(model: nn.Module, images: torch.Tensor, masks: torch.Tensor | None = None,
             target: int | torch.Tensor | str = "pred", *, methods: tuple[str, ...] = METHODS, steps: int = 8,
             baseline: str | torch.Tensor = "mean", sanity_images: int = 16, chunk: int = 32) -> dict[str, Score]:
    """Every score for every map method the model has, over `images` (B, C, H, W) and, when given, their object
    masks (B, H, W) in [0, 1]. Images go in chunks of `chunk`; the sanity check uses the first `sanity_images`
    (0: skipped)."""
    sums: dict[str, dict[str, list]] = {}
    targets = []
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk]
        maps, result = method_maps(model, x, target if not isinstance(target, torch.Tensor) or target.ndim == 0
                                   else target[i:i + chunk], methods)
        t = result.relevance_class if result.relevance_class is not None else result.cam_class
        targets.append(t)
        curves = perturbation_curves(model, x, maps, t, steps=steps, baseline=baseline)
        for m, c in curves.items():
            got = sums.setdefault(m, {"deletion": [], "insertion": [], "pointing": [], "iou": []})
            got["deletion"].append(c.deletion_auc)
            got["insertion"].append(c.insertion_auc)
            if masks is not None:
                got["pointing"].append(pointing_game(maps[m], masks[i:i + chunk]).float().numpy())
                got["iou"].append(mask_iou(maps[m], masks[i:i + chunk]).numpy())
    n = min(sanity_images, len(images))
    sanity = sanity_check(model, images[:n], torch.cat(targets)[:n], tuple(sums)) if n else {}
    mean = lambda parts: float(np.concatenate(parts).mean()) if parts else float("nan")  # noqa: E731
    return {m: Score(mean(s["pointing"]), mean(s["iou"]), mean(s["deletion"]), mean(s["insertion"]),
                     float(sanity[m].mean()) if m in sanity else float("nan"),
                     sanity[m].tolist() if m in sanity else []) for m, s in sums.items()}


# ---- late fusion: which branch the prediction rests on --------------------------------------------------
BRANCH_MAPS = {"cnn": "gradcam", "vit": "relevance"}  # late fusion: the map that explains each branch


def branch_contributions(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Late fusion: each branch's contribution to the explained logit, gradient x input of its pooled features
    at the merge ({branch: (B,)}; exact for the concat merge, where the logit is linear in them)."""
    if getattr(model, "merge", None) is None:
        raise ValueError("branch contributions need a late-fusion model (two branches and a merge)")
    pooled: list[torch.Tensor] = []
    hook = model.merge.register_forward_pre_hook(lambda m, args: pooled.extend(args[0]))
    try:
        with torch.enable_grad():
            logits = model(images)
            score = logits.gather(1, target.clone()[:, None].to(logits.device)).sum()  # clone: not an inference tensor
            grads = torch.autograd.grad(score, pooled)
    finally:
        hook.remove()
    return {name: (g * f).sum(1).detach().cpu() for name, g, f in zip(model.branches, grads, pooled)}


def branch_report(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                  scores: dict[str, Score]) -> dict[str, dict[str, float]]:
    """Late fusion, per branch: its share of the absolute logit contributions (mean over images), its mean
    contribution in logits, and the deletion AUC of the map that explains it (BRANCH_MAPS)."""
    parts = branch_contributions(model, images, target)
    total = sum(p.abs() for p in parts.values()).clamp_min(1e-12)
    return {name: {"share": float((p.abs() / total).mean()), "logit": float(p.mean()),
                   "deletion": scores[BRANCH_MAPS[name]].deletion if BRANCH_MAPS.get(name) in scores else float("nan")}
            for name, p in parts.items()}


__all__ = ["BRANCH_MAPS", "impute", "road", "branch_contributions", "branch_report", "BASELINES", "METHODS", "Curves", "Score", "cascade", "evaluate", "mask_iou", "method_maps",
           "perturbation_curves", "pointing_game", "randomise", "sanity_check", "spearman"]
