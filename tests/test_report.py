"""The HTML report: plain-language verdicts, self-containment, numbers equal to the shards."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from captum_video.datasets import MovingShapes
from captum_video.pipeline import explain_dataset
from captum_video.pipeline.report import render_report, write_report
from captum_video.pipeline.store import load_records
from captum_video.pipeline.summary import summarize
from captum_video.pipeline.verdict import motion_verdict
from tests.helpers import CHROMIUM_ARGS, chromium_path


class _Numbers(HTMLParser):
    """``data-key -> (data-value, text)`` of every ``span.num``, plus every URL referenced."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: dict[str, tuple[str, str]] = {}
        self.urls: list[str] = []
        self.tags: list[str] = []
        self._key: str | None = None
        self._value = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "span" and a.get("class") == "num":
            self._key, self._value = a["data-key"], a.get("data-value") or ""

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            self.numbers[self._key] = (self._value, data)
            self._key = None


def _parse(page: str) -> _Numbers:
    parser = _Numbers()
    parser.feed(page)
    return parser


def _config(ops: tuple[str, ...] = ("freeze", "shuffle")) -> dict[str, Any]:
    return {
        "methods": ["m"],
        "target": "prediction",
        "temporal_ops": list(ops),
        "class_names": ["a", "b"],
        "shard_size": 2,
        "float16": False,
        "selective_sigma": 3.0,
        "model": "Toy",
    }


def _record(i: int, label: int, pred: int, p: float, freeze: float, curve: list[float]) -> dict:
    return {
        "index": i,
        "name": f"clip {i}",
        "label": label,
        "target": pred,
        "prediction": pred,
        "probability": p,
        "target_probability": p,
        "top5": [[pred, p]],
        "temporal_sensitivity": {"freeze": freeze, "shuffle": freeze / 2},
        "methods": {"m": {"curve": curve, "spatial_bias": 0.25, "relevance_mass": None}},
    }


@pytest.mark.parametrize(
    ("freeze", "verdict", "headline"),
    [
        (0.8, "motion", "decides mainly from motion"),
        (0.05, "appearance", "decides mainly from appearance"),
        (0.3, "both", "uses both motion and appearance"),
    ],
)
def test_plain_words_state_the_verdict_with_its_numbers(
    freeze: float, verdict: str, headline: str
) -> None:
    peaked = [0.05, 0.05, 0.7, 0.1, 0.05, 0.05]
    # 40 clips, 30 right: enough for the verdict's intervals to clear chance (0.5).
    records = [_record(i, i % 2, i % 2 if i % 4 else 1 - i % 2, 0.9, freeze, peaked)
               for i in range(40)]  # fmt: skip
    summary = summarize(records, _config())
    assert summary["reliance"] == verdict == summary["verdict"]["verdict"]
    page = render_report(summary, records, _config())
    assert headline in page
    numbers = _parse(page).numbers
    assert numbers["overall.accuracy"] == (repr(0.75), "75%")
    assert numbers["overall.correct"][1] == "30"
    assert numbers["verdict.clips"][1] == "40"
    assert float(numbers["verdict.relative_drop"][0]) == pytest.approx(freeze / 0.9)
    assert float(numbers["overall.temporal_sensitivity.freeze"][0]) == pytest.approx(freeze)
    assert numbers["overall.frozen_probability"][1] == f"{0.9 - freeze:.2f}"
    assert numbers["overall.methods.m.spatial_bias_pct"][1] == "25%"
    # frame 3 (1-based) alone holds 70%: the core window is that frame
    assert numbers["overall.methods.m.peak_frame"][1] == "3"
    assert numbers["overall.methods.m.core_start"][1] == "3"
    assert "overall.methods.m.core_stop" not in numbers
    assert numbers["overall.methods.m.peak_share"][1] == "70%"
    assert "Did it look at the right thing" not in page  # no masks in these records


def test_flat_relevance_is_called_spread_and_unknowns_are_na() -> None:
    records = [_record(i, i % 2, i % 2, 0.6, 0.1, [1 / 8] * 8) for i in range(2)]
    records[0]["methods"]["m"]["spatial_bias"] = float("nan")
    records[1]["methods"]["m"]["spatial_bias"] = float("nan")
    page = render_report(summarize(records, _config()), records, _config())
    assert "spread over much of the clip" in page
    assert "Spatial bias of the" not in page  # no finite value: no sentence
    assert "<td>n/a</td>" in page


def _verdict_records(drops: list[float], p: float = 0.9, right: int | None = None) -> list[dict]:
    right = len(drops) if right is None else right
    return [
        {"target_probability": p, "temporal_sensitivity": {"freeze": d}, "label": 0,
         "prediction": 0 if i < right else 1}
        for i, d in enumerate(drops)
    ]  # fmt: skip


def test_verdict_needs_its_interval_clear_of_the_lines_and_of_chance() -> None:
    rng = np.random.default_rng(0)
    motion = motion_verdict(_verdict_records(list(0.8 + 0.05 * rng.standard_normal(30))), 4)
    assert motion["verdict"] == "motion" and motion["interval"][0] > 0.5
    still = motion_verdict(_verdict_records(list(0.01 * rng.standard_normal(30))), 4)
    assert still["verdict"] == "appearance" and still["interval"][1] < 0.15
    both = motion_verdict(_verdict_records([0.27] * 30), 4)
    assert both["verdict"] == "both"
    # few, scattered clips: the interval crosses 50 %
    scattered = motion_verdict(_verdict_records([0.1, 0.9, 0.2, 0.8, 0.5]), 4)
    assert scattered["verdict"] == "inconclusive" and "more clips" in scattered["reason"]
    # a model near chance gets no verdict, however large its drops
    chance = motion_verdict(_verdict_records([0.2] * 30, p=0.3, right=8), 4)
    assert chance["verdict"] == "inconclusive" and chance["near_chance"]
    assert "near chance" in chance["reason"]
    # wording follows the sign: a probability that rose is not "a drop"
    rose = motion_verdict(_verdict_records([-0.05] * 30), 4)
    assert "raises the model's confidence by" in rose["reason"]
    assert (
        motion_verdict([{"target_probability": 0.9, "temporal_sensitivity": {}}], 4)["verdict"]
        is None
    )


def test_report_says_rose_when_the_probability_rose() -> None:
    peaked = [0.05, 0.05, 0.7, 0.1, 0.05, 0.05]
    records = [_record(i, i % 2, i % 2, 0.6, -0.03, peaked) for i in range(40)]
    page = render_report(summarize(records, _config()), records, _config())
    assert "rose from" in page and "a rise of" in page and "fell from" not in page
    assert "a drop of -" not in page


def test_report_without_labels_masks_or_temporal_ops(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 6 * 6, 3))
    data = TensorDataset(torch.rand(3, 3, 4, 6, 6))
    explain_dataset(
        model,
        data,
        {"m": lambda x, t: x[:, :1].clone()},
        tmp_path,
        temporal_ops=(),
        selective_sigma=None,
        highlights=0,
        tensorboard=False,
        progress=False,
    )
    page = (tmp_path / "report.html").read_text()
    assert "no true labels were given" in page
    assert "Temporal sensitivity was not measured" in page
    assert "predicted class" in page  # the per-class table groups by prediction


def test_report_is_self_contained(tmp_path: Path) -> None:
    records = [_record(i, i % 2, i % 2, 0.9, 0.8, [0.25] * 4) for i in range(3)]
    summary = {
        **summarize(records, _config()),
        "highlights": [1],
        "exports": {"1": {"m": "clips/clip-00001-m.webm"}},
    }
    (tmp_path / "run.json").write_text(json.dumps(_config()))
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "shard-00000.json").write_text(
        json.dumps({"manifest": {"rank": 0, "run_id": "x", "seconds": 1.5}, "records": records})
    )
    page = write_report(tmp_path, title="Toy <run>").read_text()
    parsed = _parse(page)
    assert "<title>Toy &lt;run&gt;</title>" in page  # escaped
    assert "script" not in parsed.tags and "link" not in parsed.tags and "iframe" not in parsed.tags
    assert "svg" in parsed.tags and "style" in parsed.tags
    # every referenced file is relative (exported clips, the CSV), nothing from the network
    assert parsed.urls and all("://" not in u and not u.startswith("//") for u in parsed.urls)
    assert "clips/clip-00001-m.webm" in parsed.urls


def test_write_report_needs_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="summary.json"):
        write_report(tmp_path)


# --------------------------------------------------------------------------- in Chromium


def _expected_numbers(out: Path) -> dict[str, float]:
    """The summary's numbers recomputed from the shards alone, independently of summarize()."""
    records = load_records(out)
    n = len(records)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    right = sum(r["prediction"] == r["label"] for r in records)
    p = mean([r["target_probability"] for r in records])
    freeze = mean([r["temporal_sensitivity"]["freeze"] for r in records])
    m = [r["methods"]["gradcam_tube"] for r in records]
    curve = [mean([c["curve"][t] for c in m]) for t in range(len(m[0]["curve"]))]
    peak = max(range(len(curve)), key=curve.__getitem__)
    # shortest run of frames holding half the relevance (the fullest one on ties), brute force
    windows = [(a, b) for a in range(len(curve)) for b in range(a + 1, len(curve) + 1)]
    enough = [w for w in windows if sum(curve[w[0] : w[1]]) >= 0.5 * sum(curve) - 1e-12]
    start, stop = min(enough, key=lambda w: (w[1] - w[0], -sum(curve[w[0] : w[1]]), w[0]))
    expected = {
        "overall.correct": right,
        "overall.accuracy": right / n,
        "overall.probability": mean([r["probability"] for r in records]),
        "overall.target_probability": p,
        "overall.frozen_probability": p - freeze,
        "overall.temporal_sensitivity.freeze": freeze,
        "overall.temporal_sensitivity.shuffle": mean(
            [r["temporal_sensitivity"]["shuffle"] for r in records]
        ),
        "overall.methods.gradcam_tube.spatial_bias": mean([c["spatial_bias"] for c in m]),
        "overall.methods.gradcam_tube.spatial_bias_pct": mean([c["spatial_bias"] for c in m]),
        "overall.methods.gradcam_tube.relevance_mass": mean([c["relevance_mass"] for c in m]),
        "overall.methods.gradcam_tube.peak_frame": peak + 1,
        "overall.methods.gradcam_tube.peak_share": curve[peak],
        "overall.methods.gradcam_tube.core_start": start + 1,
    }
    if stop - start > 1:
        expected["overall.methods.gradcam_tube.core_stop"] = stop
    return expected


def _shown(value: float, fmt: str) -> str:
    return {"num": f"{value:.2f}", "pct": f"{100 * value:.0f}%", "int": f"{value:.0f}"}[fmt]


@pytest.mark.browser
def test_report_renders_in_chromium_with_the_numbers_of_the_shards(
    tmp_path: Path, demo_model: torch.nn.Module
) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "run"
    explain_dataset(
        demo_model,
        MovingShapes("motion", num_samples=4, seed=5),
        ["gradcam_tube"],
        out,
        batch_size=4,
        highlights=1,
        tensorboard=False,
        progress=False,
    )
    expected = _expected_numbers(out)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")
            shown = page.eval_on_selector_all(
                "span.num",
                "els => els.map(e => [e.dataset.key, e.dataset.value, e.dataset.fmt, e.innerText])",
            )
            verdict = page.inner_text(".verdict")
            per_class_rows = page.locator("#per-class tbody tr").count()
            points = page.eval_on_selector_all(
                "svg polyline", "els => els.map(e => e.points.numberOfItems)"
            )
            visible = page.is_visible("#plain") and page.is_visible("#experts")
            # the exported clip is a playable video: the browser decodes its size
            page.wait_for_function(
                "() => [...document.querySelectorAll('video')].every(v => v.videoWidth > 0)",
                timeout=30_000,
            )
            width = page.eval_on_selector("video", "v => v.videoWidth")
        finally:
            browser.close()

    numbers = {key: (float(value), fmt, text) for key, value, fmt, text in shown}
    assert set(expected) <= set(numbers), set(expected) - set(numbers)
    for key, value in expected.items():
        got, fmt, text = numbers[key]
        assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12), (key, got, value)
        assert text == _shown(value, fmt), (key, text, value)
    assert verdict == "This model decides mainly from motion."  # the demo model sees motion
    classes = {r["label"] for r in load_records(out)}
    assert per_class_rows == len(classes) + 1  # one row per class, plus "all"
    assert points and all(n == 16 for n in points)  # curves over the 16 frames
    assert visible and width == 2 * 32 * 4  # original | overlay, 32 px scaled 4x
    assert all(url.startswith("file://") for url in requested), requested
