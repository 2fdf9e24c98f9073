"""`dvc plots show` writes a page that draws without internet (the offline HTML template).

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN; the repository sets
`plots.html_template` in .dvc/config to .dvc/plots/offline.html, which carries them inline.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dvc_repo import REPO, run

# A <script> element that loads code from elsewhere, and the CDNs DVC's default page uses.
EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=", re.IGNORECASE)
CDN = re.compile(r"cdn\.jsdelivr|unpkg\.com", re.IGNORECASE)
# One marker of each inline library: the globals their browser builds define.
LIBRARY_MARKERS = {"vega": ".vega={}", "vega-lite": ".vegaLite={}",
                   "vega-embed": "CLICK_TO_VIEW_ACTIONS"}
SPEC = re.compile(r"var spec = (\{.*?\});\s*vegaEmbed\('#", re.DOTALL)


def configured_template() -> str:
    """plots.html_template from the repository's .dvc/config (DVC reads it relative to .dvc/)."""
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config", encoding="utf-8")
    assert config.has_option("plots", "html_template"), ".dvc/config sets no plots.html_template"
    return config.get("plots", "html_template")


def test_repository_template_is_self_contained():
    value = configured_template()
    assert not os.path.isabs(value)
    page = (REPO / ".dvc" / value).read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1
    # DVC replaces its scripts placeholder with CDN <script src=...> tags.
    assert "{scripts}" not in page
    assert not EXTERNAL_SCRIPT.search(page)
    assert not CDN.search(page)
    for name, marker in LIBRARY_MARKERS.items():
        assert marker in page, f"{name} is not inline in {value}"
    assert len(page.encode()) < 1_500_000


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DVC repository with our template and one plot of each kind, after `dvc plots show`."""
    repo = tmp_path_factory.mktemp("offline_plots")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)
    run(["dvc", "config", "plots.html_template", configured_template()], repo)

    (repo / "pr_curves.csv").write_text(
        "recall,precision,threshold,label\n"
        "0,1,0.9,cat\n0.5,0.8,0.6,cat\n1,0.5,0.1,cat\n"
        "0,1,0.8,dog\n0.5,0.6,0.5,dog\n1,0.4,0.2,dog\n", encoding="utf-8")
    metrics = repo / "dvclive" / "plots" / "metrics" / "train"
    metrics.mkdir(parents=True)
    (metrics / "loss.tsv").write_text("step\tloss\n1\t2.5\n2\t1.75\n3\t1.25\n", encoding="utf-8")
    (repo / "dvc.yaml").write_text(
        "plots:\n"
        "  - pr_curves.csv:\n"
        "      x: recall\n"
        "      y: precision\n"
        "      template: pr_overlay\n"
        "  - dvclive/plots/metrics:\n"
        "      x: step\n"
        "      x_label: epoch\n"
        "      template: epochs\n", encoding="utf-8")

    run(["dvc", "plots", "show"], repo)
    page = repo / "dvc_plots" / "index.html"
    assert page.is_file()
    return page


def test_plots_page_loads_nothing_from_the_network(shown: Path):
    html = shown.read_text(encoding="utf-8")
    assert not EXTERNAL_SCRIPT.search(html)
    assert not CDN.search(html)
    for name, marker in LIBRARY_MARKERS.items():
        assert marker in html, f"{name} is missing from the page"


def test_plots_page_holds_the_specs(shown: Path):
    specs = [json.loads(s) for s in SPEC.findall(shown.read_text(encoding="utf-8"))]
    assert len(specs) == 2
    by_title = {spec["title"]["text"]: spec for spec in specs}
    overlay = by_title["pr_curves.csv"]
    # One chart, one line per label: colour comes from the data's label column.
    assert overlay["encoding"]["color"]["field"] == "curve"
    assert "datum.label" in overlay["transform"][0]["calculate"]
    assert {row["label"] for row in overlay["data"]["values"]} == {"cat", "dog"}
    assert overlay["encoding"]["x"]["field"] == "recall"
    curves = by_title["loss per epoch"]  # named by its quantity, the file below
    assert curves["title"]["subtitle"].endswith("loss.tsv")
    assert curves["encoding"]["x"]["field"] == "step"
    assert curves["encoding"]["x"]["title"] == "epoch"
    assert curves["encoding"]["x"]["axis"]["tickMinStep"] == 1  # no 0.5 epochs
    assert [row["loss"] for row in curves["data"]["values"]] == ["2.5", "1.75", "1.25"]


def test_plots_page_draws_offline_in_a_browser(shown: Path, tmp_path: Path):
    browser = shutil.which("chromium")
    if browser is None:
        message = "chromium is not installed: the page was not drawn in a browser"
        if os.environ.get("SALGL_REQUIRE_BROWSER"):  # CI: the set-up installs it, so no skip
            pytest.fail(message)
        pytest.skip(message)
    command = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}",
               # networking off: every host name fails to resolve and any proxy use fails
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
               "--virtual-time-budget=5000"]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"],
                                                  capture_output=True).returncode == 0:
        command = ["unshare", "-n", *command]  # and no network interface at all, where allowed
    result = subprocess.run([*command, "--dump-dom", shown.as_uri()], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    # vega-embed draws each chart into a canvas of class "marks" inside its div
    assert dom.count('class="marks"') == 2, dom[-2000:]
    # ... and the canvases hold the charts: the page's only colour is the charts' marks (the
    # titles, axes and grid are grey), so a page whose charts stayed empty has none
    picture = tmp_path / "page.png"
    result = subprocess.run([*command, f"--screenshot={picture}", "--window-size=1200,900",
                             "--hide-scrollbars", shown.as_uri()], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = np.asarray(Image.open(picture).convert("RGB")).astype(int)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert coloured.sum() > 500, coloured.sum()
