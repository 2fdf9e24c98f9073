"""The headroom calculator on cases with a known answer, and on the embedded dataset."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from salgl.config import FashionScenesConfig
from salgl.errors import SalglError
from salgl.headroom import (
    LabelDistribution,
    draw_without_replacement,
    fashion_scenes_distribution,
    fit_pairwise,
    headroom,
    label_sets,
)

from dvc_repo import REPO


def test_drawing_without_replacement_matches_every_ordering_summed() -> None:
    weights = np.array([5.0, 1.0, 2.0, 0.5, 3.0])
    p = weights / weights.sum()
    configs = label_sets(5, range(1, 4))
    exact = draw_without_replacement(configs, weights)
    for row, prob in zip(configs, exact, strict=True):
        members = np.flatnonzero(row)
        total = 0.0
        for order in itertools.permutations(members):
            step, left = 1.0, 1.0
            for c in order:
                step *= p[c] / left
                left -= p[c]
            total += step
        assert prob == pytest.approx(total, rel=1e-12)
    for n in (1, 2, 3):  # each size's sets cover every outcome of n draws
        assert exact[configs.sum(1) == n].sum() == pytest.approx(1.0, abs=1e-12)


def test_generator_distribution_matches_drawn_label_sets() -> None:
    """The exact distribution agrees with the generator's own plans (frequency of sizes and of
    each label per scene of the background), within sampling error."""
    from salgl.data.fashion_scenes import plan_image, scene_distributions

    cfg = FashionScenesConfig(num_scenes=3, scene_purity=0.9, background_match=0.7,
                              items_min=2, items_max=3)
    dist = fashion_scenes_distribution(cfg)
    rng = np.random.default_rng(0)
    pools = [np.array([0])] * 10
    dists = scene_distributions(3, 0.9)
    n = 20000
    seen = np.zeros((10, 3))
    for _ in range(n):
        plan = plan_image(cfg, "train", dists, pools, rng)
        seen[plan.labels, plan.style_scene] += 1
    expected = dist.configs.T @ dist.joint * n          # (labels, backgrounds)
    assert np.abs(seen - expected).max() < 5 * np.sqrt(expected.max())


def xor_distribution() -> LabelDistribution:
    """Label 3 = label 1 xor label 2: every pairwise statistic is that of independent fair
    coins, so only a model of the whole set can know label 3 from the others."""
    configs = label_sets(3, range(0, 4))
    xor = (configs[:, 2] == np.logical_xor(configs[:, 0], configs[:, 1])).astype(float)
    return LabelDistribution(configs, (xor / xor.sum())[:, None])


def test_known_answers_on_a_distribution_with_only_third_order_structure() -> None:
    dist = xor_distribution()
    fitted = fit_pairwise(dist)
    assert fitted[:, 0] == pytest.approx(np.full(8, 1 / 8), abs=1e-6)  # no pairwise structure
    blind = headroom(dist, signal=0.0, images=2000)
    for name in ("independent", "pairwise", "scenes"):  # constant scores: AP = prevalence
        assert blind[f"mAP_{name}"] == pytest.approx(0.5, abs=0.02)
    sharp = headroom(dist, signal=30.0, images=2000)
    assert sharp["mAP_scenes"] == pytest.approx(1.0)
    assert sharp["mAP_pairwise"] == pytest.approx(1.0)
    mid = headroom(dist, signal=1.5, images=4000)
    assert mid["mAP_pairwise"] == pytest.approx(mid["mAP_independent"], abs=1e-3)
    assert mid["headroom"] > max(0.02, 5 * mid["headroom_se"])


def test_no_headroom_when_the_truth_is_pairwise() -> None:
    """A distribution the pairwise family holds exactly: (ii) and (iii) are one model."""
    configs = label_sets(4, range(0, 5))
    rng = np.random.default_rng(3)
    h, j = rng.normal(size=4), rng.normal(size=(4, 4))
    logits = configs @ h + np.einsum("mi,ij,mj->m", configs, np.triu(j, 1), configs)
    joint = np.exp(logits)[:, None] * np.array([[0.3, 0.7]])
    dist = LabelDistribution(configs, joint / joint.sum())
    assert fit_pairwise(dist) == pytest.approx(dist.joint, abs=1e-7)
    result = headroom(dist, signal=1.0, images=4000)
    assert result["headroom"] == pytest.approx(0.0, abs=1e-6)


def test_first_edition_data_and_its_control() -> None:
    """The first edition's data (params.yaml's default until 2026-12-01) leave almost nothing
    for scenes to add; the control none."""
    cfg = FashionScenesConfig(num_scenes=4, scene_purity=0.85, background_match=0.6,
                              items_min=2, items_max=4)
    today = headroom(fashion_scenes_distribution(cfg), target_map=0.563)
    assert today["mAP_independent"] == pytest.approx(0.563, abs=1e-6)
    assert 0.0 < today["headroom"] <= 0.005
    quoted = f"{today['headroom']:.4f} ± {today['headroom_se']:.4f}"
    assert quoted in (REPO / "docs/results.md").read_text(encoding="utf-8")
    assert f"it is {today['headroom']:.4f} test mAP" in (REPO / "README.md").read_text()
    control = headroom(fashion_scenes_distribution(dataclasses.replace(cfg, scene_purity=0.0)),
                       target_map=0.563, images=8000)
    assert control["headroom"] == pytest.approx(0.0, abs=1e-6)


def test_bad_requests_are_named() -> None:
    dist = xor_distribution()
    with pytest.raises(SalglError, match="either the evidence signal or a target mAP"):
        headroom(dist)
    with pytest.raises(SalglError, match="target mAP 0.01: outside"):
        headroom(dist, target_map=0.01, images=500)
    with pytest.raises(SalglError, match="must be >= 0 and sum to 1"):
        LabelDistribution(dist.configs, dist.joint * 2)


def test_positive_control_design_has_headroom_only_with_pure_scenes() -> None:
    """The second edition's design: scenes change which partner goes with which top while
    every label's frequency and every pair's co-occurrence stay the same in every scene."""
    from salgl.headroom import latin_matchings_distribution

    pure = latin_matchings_distribution(0.9, 1.0)
    scenes_of_sets = pure.joint  # background = scene here
    per_scene_pairs = np.einsum("ms,mi,mj->sij", scenes_of_sets, pure.configs, pure.configs)
    per_scene_pairs /= scenes_of_sets.sum(0)[:, None, None]
    tops, partners = [0, 2, 4, 6], [5, 7, 9, 8]
    marginals = np.diagonal(per_scene_pairs, axis1=1, axis2=2)
    assert np.allclose(marginals, marginals[0])                  # same label frequencies
    mixed = per_scene_pairs[:, tops][:, :, partners].mean(0)
    assert np.allclose(mixed, mixed[0, 0])                        # overall: every pair alike
    assert not np.allclose(per_scene_pairs[0][np.ix_(tops, partners)],
                           per_scene_pairs[1][np.ix_(tops, partners)])  # per scene: not
    gain = headroom(pure, signal=0.945)
    assert gain["headroom"] > 0.03 > 5 * gain["headroom_se"]
    row = (f"| positive control, purity 0.9, background always its scene's | 0.945 | "
           f"{gain['mAP_independent']:.3f} | {gain['mAP_pairwise']:.3f} | "
           f"{gain['mAP_scenes']:.3f} | {gain['headroom']:.4f} ± {gain['headroom_se']:.4f} |")
    assert row in (REPO / "docs/results.md").read_text(encoding="utf-8")
    none = headroom(latin_matchings_distribution(0.0, 1.0), signal=0.945, images=8000)
    assert none["headroom"] == pytest.approx(0.0, abs=1e-6)


def test_the_generator_draws_the_positive_control_it_is_computed_for() -> None:
    """structure: latin_matchings in the generator against its exact distribution."""
    from salgl.data.fashion_scenes import plan_image

    cfg = FashionScenesConfig(num_scenes=4, structure="latin_matchings", scene_purity=0.9,
                              background_match=0.6)
    dist = fashion_scenes_distribution(cfg)
    rng = np.random.default_rng(1)
    n = 20000
    seen: dict[tuple, int] = {}
    for _ in range(n):
        plan = plan_image(cfg, "train", np.zeros((4, 10)), [np.array([0])] * 10, rng)
        key = (tuple(plan.labels), plan.style_scene)
        seen[key] = seen.get(key, 0) + 1
    rows = {tuple(np.flatnonzero(c)): m for m, c in enumerate(dist.configs)}
    observed = np.zeros_like(dist.joint)
    for (labels, background), count in seen.items():
        observed[rows[labels], background] += count  # a set outside the support fails here
    expected = dist.joint * n
    assert np.abs(observed - expected).max() < 5 * np.sqrt(expected.max()) + 5


def test_latin_matchings_needs_four_scenes() -> None:
    from salgl.config import parse

    with pytest.raises(SalglError, match=r"prepare.x.num_scenes: the latin_matchings structure "
                                         r"has exactly 4 scenes"):
        parse(FashionScenesConfig, {"structure": "latin_matchings", "num_scenes": 3},
              "prepare.x")


def test_the_command_prints_what_the_readme_quotes(tmp_path) -> None:
    """`salgl headroom` as a user runs it, in its own process, from the repository root: the
    README's three headroom numbers, on the first edition's data and on today's default."""
    import json
    import os
    import subprocess
    import sys

    def salgl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "salgl.cli", "-q", "headroom", *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})

    def headroom(*args: str) -> dict:
        done = salgl(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = ("--set", "structure=favoured", "--set", "scene_purity=0.85",
             "--set", "background_match=0.6")
    old = salgl(*first, "--target-map", "0.563", "--out", str(tmp_path / "old.json"))
    assert old.returncode == 0, old.stderr
    assert json.loads((tmp_path / "old.json").read_text()) == json.loads(old.stdout)
    assert json.loads(old.stdout)["background_only_scene_agreement"] == pytest.approx(0.7)
    default = headroom("--signal", "0.945")
    fitted = headroom("--set", "scene_purity=0", "--target-map", "0.552")["signal"]
    trained = headroom("--signal", f"{fitted:.3f}")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Is scene awareness worth it?"):]
    assert f"it is {json.loads(old.stdout)['headroom']:.4f} test mAP" in section
    assert f"it is {default['headroom']:.3f} at the" in section
    assert f"and {trained['headroom']:.3f} at the level of the models" in section
    default_run = readme[readme.index("### What the default run gives"):]
    assert f"against {json.loads(old.stdout)['headroom']:.4f} on the data the default" in (
        default_run.replace("\n", " "))
    refused = salgl("mscoco", "--signal", "1")
    assert refused.returncode == 2
    assert "prepare.mscoco: headroom needs an embedded dataset" in refused.stderr


def test_background_only_scene_recovery_matches_a_drawn_sample() -> None:
    """The exact baseline equals NMI and agreement measured on 200,000 drawn images, and has
    the known ends: a background that always shows the scene recovers it fully, one that never
    does, not at all."""
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    from salgl.scene_match import background_only_recovery

    rng = np.random.default_rng(0)
    true = rng.integers(4, size=200_000)
    shown = np.where(rng.random(true.size) < 0.6, true, rng.integers(4, size=true.size))
    exact = background_only_recovery(4, 0.6)
    assert exact["agreement"] == pytest.approx(0.7)
    assert exact["agreement"] == pytest.approx(float(np.mean(true == shown)), abs=0.004)
    assert exact["nmi"] == pytest.approx(normalized_mutual_info_score(true, shown), abs=0.003)
    assert background_only_recovery(4, 1.0) == pytest.approx({"agreement": 1.0, "nmi": 1.0})
    assert background_only_recovery(4, 0.0) == pytest.approx({"agreement": 0.25, "nmi": 0.0})
