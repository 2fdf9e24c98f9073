"""How much a scene-aware label model could gain on a synthetic dataset, before any training.

From the generator's exact distribution of (label set, background style) and a stated model of
visual evidence, the Bayes-optimal test mAP of three label models, each used as the prior of an
exact posterior over every label set the generator can draw:

- (i) ``independent``: each label on its own, with its true frequency; no background.
- (ii) ``pairwise``: the best model that knows only pairwise statistics: the maximum-entropy
  distribution over (label set, background) that matches the true frequencies of every label,
  every label pair, every (label, background) pair and every background. It knows which labels
  go together overall and how the background shifts each label.
- (iii) ``scenes``: the true scene mixture, P(label set | background) = sum over scenes.

(iii) - (ii) is the headroom of scene awareness: what knowing the scenes adds to everything a
global co-occurrence graph plus the background can know. Both models are told which set sizes
the generator draws (its support), so the difference is structure, not counting.

Evidence: label c's evidence is ``signal * y_c + N(0, 1)``, independently per label and image,
the same for every model; the images are a Monte Carlo sample from the true distribution, shared
by the three models so that their differences carry little sampling noise (its standard error
is reported). ``fit_signal`` picks the signal at which (i) reaches a measured mAP, e.g. the
plain backbone's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from salgl.errors import SalglError
from salgl.metrics import average_precision, mean_ap

MODELS = ("independent", "pairwise", "scenes")


@dataclass(frozen=True)
class LabelDistribution:
    """A generator's exact distribution: ``joint[m, b]`` = P(label set m, background b)."""

    configs: np.ndarray  # (M, C) 0/1: every label set the generator can draw
    joint: np.ndarray    # (M, B)

    def __post_init__(self) -> None:
        if self.configs.ndim != 2 or self.joint.shape[0] != self.configs.shape[0]:
            raise SalglError(f"label distribution: {self.configs.shape} sets against joint "
                             f"{self.joint.shape}")
        if (self.joint < 0).any() or not math.isclose(self.joint.sum(), 1.0, abs_tol=1e-9):
            raise SalglError("label distribution: joint probabilities must be >= 0 and sum "
                             f"to 1 (sum {self.joint.sum():.12f})")


def label_sets(num_labels: int, sizes: range) -> np.ndarray:
    """Every set of ``sizes`` labels out of ``num_labels``, as 0/1 rows."""
    rows = [np.isin(np.arange(num_labels), combo)
            for n in sizes for combo in itertools.combinations(range(num_labels), n)]
    return np.array(rows, dtype=np.float64)


def draw_without_replacement(configs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """P(the first |S| draws are exactly the set S) for each row S, when labels are drawn one at
    a time in proportion to ``weights`` among those not drawn yet (numpy's ``choice`` with
    ``replace=False`` and ``p``). Dynamic programming over subsets."""
    num = len(weights)
    if num > 20:
        raise SalglError(f"{num} labels: too many for the exact subset recursion (at most 20)")
    p = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    masks = np.arange(1 << num)
    members = (masks[:, None] >> np.arange(num)) & 1
    mass = members @ p
    prob = np.zeros(1 << num)
    prob[0] = 1.0
    for mask in range(1, 1 << num):  # ordered by value, so every subset comes first
        for c in np.flatnonzero(members[mask]):
            rest = mask & ~(1 << c)
            if prob[rest] > 0:
                prob[mask] += prob[rest] * p[c] / max(1.0 - mass[rest], 1e-300)
    index = configs.astype(np.int64) @ (1 << np.arange(num))
    return prob[index]


def fashion_scenes_distribution(cfg) -> LabelDistribution:
    """The exact distribution of salgl.data.fashion_scenes for its settings ``cfg``."""
    from salgl.data.fashion_mnist import FASHION_LABELS
    from salgl.data.fashion_scenes import MAX_ITEMS, scene_distributions

    if cfg.structure == "latin_matchings":
        from salgl.data.fashion_scenes import DISTRACTOR

        return latin_matchings_distribution(cfg.scene_purity, cfg.background_match, DISTRACTOR)
    k = cfg.num_scenes
    counts = [min(n, MAX_ITEMS) for n in range(cfg.items_min, cfg.items_max + 1)]
    sizes = range(min(counts), max(counts) + 1)
    configs = label_sets(len(FASHION_LABELS), sizes)
    size_of = configs.sum(1).astype(int)
    size_prob = {n: counts.count(n) / len(counts) for n in sizes}
    dists = scene_distributions(k, cfg.scene_purity)
    sets_given_scene = np.stack([
        draw_without_replacement(configs, dists[s]) * np.vectorize(size_prob.get)(size_of)
        for s in range(k)], axis=1)                                    # (M, K)
    m = cfg.background_match
    background_given_scene = m * np.eye(k) + (1.0 - m) / k           # (K scenes, B styles)
    joint = sets_given_scene @ background_given_scene / k
    return LabelDistribution(configs, joint / joint.sum())


# ----------------------------------------------------------------------------- the models


def pairwise_features(configs: np.ndarray, backgrounds: int) -> np.ndarray:
    """(M, B, F): each label, each label pair, each (label, background), each background."""
    m, c = configs.shape
    pairs = np.stack([configs[:, i] * configs[:, j]
                      for i, j in itertools.combinations(range(c), 2)], axis=1)
    per_set = np.concatenate([configs, pairs], axis=1)                 # (M, C + pairs)
    eye = np.eye(backgrounds)
    label_bg = configs[:, None, :, None] * eye[None, :, None, :]       # (M, B, C, B)
    return np.concatenate([
        np.broadcast_to(per_set[:, None, :], (m, backgrounds, per_set.shape[1])),
        label_bg.reshape(m, backgrounds, c * backgrounds),
        np.broadcast_to(eye[None], (m, backgrounds, backgrounds))], axis=2)


def fit_pairwise(dist: LabelDistribution) -> np.ndarray:
    """The maximum-entropy joint over the same support that matches every pairwise statistic
    of ``dist`` (convex; L-BFGS to a gradient below 1e-10)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    features = pairwise_features(dist.configs, dist.joint.shape[1])
    flat = features.reshape(-1, features.shape[-1])
    target = dist.joint.reshape(-1) @ flat

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = flat @ theta
        log_z = logsumexp(logits)
        q = np.exp(logits - log_z)
        return log_z - theta @ target, q @ flat - target

    result = minimize(loss, np.zeros(flat.shape[1]), jac=True, method="L-BFGS-B",
                      options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15})
    logits = flat @ result.x
    q = np.exp(logits - logits.max())
    return (q / q.sum()).reshape(dist.joint.shape)


def _given_background(joint: np.ndarray) -> np.ndarray:
    """(M, B) P(set | background); a background the joint never shows gets the overall sets."""
    totals = joint.sum(0, keepdims=True)
    overall = joint.sum(1, keepdims=True)
    return np.where(totals > 0, joint / np.where(totals > 0, totals, 1.0), overall)


def posterior_marginals(prior: np.ndarray, configs: np.ndarray, evidence: np.ndarray,
                        backgrounds: np.ndarray, signal: float) -> np.ndarray:
    """(N, C) P(label c | evidence, background) under the prior P(set | background)."""
    log_prior = np.log(np.maximum(prior, 1e-300))[:, backgrounds].T          # (N, M)
    log_lik = signal * evidence @ configs.T - 0.5 * signal**2 * configs.sum(1)
    log_post = log_prior + log_lik
    log_post -= log_post.max(1, keepdims=True)
    post = np.exp(log_post)
    post /= post.sum(1, keepdims=True)
    return post @ configs


@dataclass
class Sample:
    """Test images drawn from the true distribution: labels, background, unit noise."""

    targets: np.ndarray      # (N, C)
    backgrounds: np.ndarray  # (N,)
    noise: np.ndarray        # (N, C)

    def evidence(self, signal: float) -> np.ndarray:
        return signal * self.targets + self.noise


def draw_sample(dist: LabelDistribution, images: int, seed: int) -> Sample:
    rng = np.random.default_rng(seed)
    cells = rng.choice(dist.joint.size, size=images, p=dist.joint.reshape(-1))
    sets, backgrounds = np.divmod(cells, dist.joint.shape[1])
    targets = dist.configs[sets]
    return Sample(targets, backgrounds, rng.standard_normal(targets.shape))


def independent_scores(dist: LabelDistribution, sample: Sample, signal: float) -> np.ndarray:
    """Model (i): each label's posterior from its own evidence and frequency."""
    freq = np.clip(dist.joint.sum(1) @ dist.configs, 1e-12, 1 - 1e-12)
    logit = np.log(freq / (1 - freq)) + signal * sample.evidence(signal) - 0.5 * signal**2
    return 1.0 / (1.0 + np.exp(-logit))


def fit_signal(dist: LabelDistribution, sample: Sample, target_map: float) -> float:
    """The signal at which model (i) reaches ``target_map`` on ``sample`` (bisection)."""
    def independent_map(signal: float) -> float:
        return mean_ap(average_precision(independent_scores(dist, sample, signal),
                                         sample.targets))

    low, high = 0.0, 12.0
    floor, ceiling = independent_map(low), independent_map(high)
    if not floor <= target_map <= ceiling:
        raise SalglError(f"target mAP {target_map}: outside what the evidence model reaches "
                         f"here ({floor:.3f} with no signal to {ceiling:.3f})")
    for _ in range(40):
        middle = 0.5 * (low + high)
        if independent_map(middle) < target_map:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def headroom(dist: LabelDistribution, signal: float | None = None,
             target_map: float | None = None, images: int = 20000, seed: int = 0,
             batches: int = 10) -> dict:
    """Bayes-optimal test mAP of the three models, and (iii) - (ii) with its Monte Carlo
    standard error over ``batches`` equal parts of the sample."""
    if (signal is None) == (target_map is None):
        raise SalglError("headroom: give either the evidence signal or a target mAP")
    sample = draw_sample(dist, images, seed)
    if signal is None:
        signal = fit_signal(dist, sample, target_map)
    evidence = sample.evidence(signal)
    priors = {"pairwise": _given_background(fit_pairwise(dist)),
              "scenes": _given_background(dist.joint)}
    scores = {"independent": independent_scores(dist, sample, signal)}
    for name, prior in priors.items():
        scores[name] = posterior_marginals(prior, dist.configs, evidence, sample.backgrounds,
                                           signal)
    maps = {name: mean_ap(average_precision(s, sample.targets)) for name, s in scores.items()}
    parts = np.array_split(np.arange(images), batches)
    gains = [mean_ap(average_precision(scores["scenes"][p], sample.targets[p]))
             - mean_ap(average_precision(scores["pairwise"][p], sample.targets[p]))
             for p in parts]
    return {"signal": signal, "images": images, "seed": seed,
            **{f"mAP_{name}": maps[name] for name in MODELS},
            "headroom": maps["scenes"] - maps["pairwise"],
            "headroom_se": float(np.std(gains, ddof=1) / np.sqrt(batches)),
            "pairwise_gain": maps["pairwise"] - maps["independent"]}


def latin_matchings_distribution(purity: float, background_match: float,
                                 distractor: float = 0.5) -> LabelDistribution:
    """The positive control's exact distribution (``structure: latin_matchings`` of
    salgl.data.fashion_scenes; docs/results.md).

    Four scenes are the four cyclic matchings of the four tops (t-shirt, pullover, coat,
    shirt) with four partners (sandal, sneaker, ankle boot, bag): scene s pairs top i with
    partner (i + s) mod 4. An image shows two distinct tops, each with its scene's partner
    (with probability ``purity``, else a partner drawn uniformly), and with probability
    ``distractor`` one of trouser and dress. Every label's frequency and every pair's
    co-occurrence is the same in every scene's mixture over the tops; only which partner goes
    with which top, given the other pair, tells the scenes apart.
    """
    from salgl.data.fashion_mnist import FASHION_LABELS
    from salgl.data.fashion_scenes import DISTRACTORS, MATCH_PARTNERS, MATCH_TOPS

    tops, partners = MATCH_TOPS, MATCH_PARTNERS
    extras = [(None, 1.0 - distractor),
              *((d, distractor / len(DISTRACTORS)) for d in DISTRACTORS)]
    num_labels, scenes = len(FASHION_LABELS), 4
    probs: dict[tuple[int, ...], np.ndarray] = {}
    for s in range(scenes):
        for i, j in itertools.combinations(range(4), 2):
            for a, b in itertools.product(range(4), repeat=2):   # the partners of i and j
                p_pair = 1.0 / 6
                for top, partner in ((i, a), (j, b)):
                    own = (top + s) % 4 == partner
                    p_pair *= purity * own + (1.0 - purity) / 4
                for extra, p_extra in extras:
                    labels = {tops[i], tops[j], partners[a], partners[b]}
                    if extra is not None:
                        labels.add(extra)
                    key = tuple(sorted(labels))
                    probs.setdefault(key, np.zeros(scenes))[s] += p_pair * p_extra / scenes
    keys = sorted(probs)
    configs = np.zeros((len(keys), num_labels))
    for row, key in enumerate(keys):
        configs[row, list(key)] = 1.0
    sets_and_scene = np.stack([probs[k] for k in keys])                # (M, scenes)
    background_given_scene = background_match * np.eye(scenes) + (1 - background_match) / scenes
    joint = sets_and_scene @ background_given_scene
    return LabelDistribution(configs, joint / joint.sum())
