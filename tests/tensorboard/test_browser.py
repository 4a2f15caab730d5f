"""End to end: a real ``tensorboard`` process, headless Chromium, the plugin's iframe.

Relevance clips with known pixels are written with add_relevance_clip; the test then plays,
scrubs, switches run, tag, step and part, and reads pixels back from the canvases: the
original frame must be exact, the overlay must be the documented blend of the original with
the colour map, and the curve must have its current-frame marker and its line where the
per-frame relevance puts them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from captum_video.tensorboard import add_relevance_clip
from tests.helpers import CHROMIUM_ARGS, chromium_path

pytestmark = pytest.mark.browser

T, H, W = 6, 16, 16
FPS = 8
CLASSES = ["right", "left", "down", "up"]
# The frontend's colour ramps (static/index.js), re-stated here as the documented contract.
WARM = [(0, 120, 0, 0), (0.4, 230, 30, 0), (0.7, 255, 160, 0), (1, 255, 255, 120)]
COLD = [(0, 0, 0, 140), (0.5, 0, 90, 255), (1, 120, 220, 255)]
MARKER = (255, 109, 0)
CURVE_BLUE = (21, 101, 192)


def background(run: str, tag: str, step: int, t: int) -> tuple[int, int, int]:
    """The flat colour of frame ``t`` of each logged clip."""
    if tag == "relevance/moving":
        return (20 + 30 * t, 60 + 40 * step, 200 - 20 * t)
    if run == "run_a":
        return (90, 90, 20 + 10 * t)
    return (200, 30, 30 + 20 * t)


def _video(run: str, tag: str, step: int) -> torch.Tensor:
    rgb = torch.tensor([background(run, tag, step, t) for t in range(T)], dtype=torch.float32)
    return (rgb / 255).T[:, :, None, None].expand(3, T, H, W).clone()


def _moving_parts() -> dict[str, torch.Tensor]:
    joint = torch.zeros(T, H, W)
    for t in range(T):  # a square moving right, growing in relevance over time
        joint[t, 2:6, 2 * t : 2 * t + 4] = 2.0 * (t + 1) / T
    joint[:, 12:16, 12:16] = -1.0  # a constant negative corner
    spatial = torch.zeros(T, H, W)
    spatial[:, 8:12, 0:4] = 1.0
    temporal = torch.zeros(T, H, W)
    temporal[:, 8:12, 8:12] = 1.0
    return {"joint": joint, "spatial": spatial, "temporal": temporal}


def joint_curve(t: int) -> float:
    return 16 * 2.0 * (t + 1) / T - 16


def _write_logdir(logdir: Path) -> None:
    parts = _moving_parts()
    writer = SummaryWriter(str(logdir / "run_a"))
    for step in (0, 1):
        add_relevance_clip(
            writer,
            "relevance/moving",
            _video("run_a", "relevance/moving", step),
            (parts["joint"] / 3).expand(3, T, H, W),  # the channel sum is the joint map
            step,
            target=0,
            prediction=torch.tensor([3.0, 0.0, -1.0, 0.5]),
            method="IntegratedGradients",
            fps=FPS,
            extra={"spatial": parts["spatial"], "temporal": parts["temporal"]},
            class_names=CLASSES,
        )
    plain = torch.zeros(T, H, W)
    plain[:, 4:8, 4:8] = 1.0
    add_relevance_clip(
        writer, "relevance/still", _video("run_a", "relevance/still", 0), plain, 0, fps=FPS
    )
    writer.close()
    writer = SummaryWriter(str(logdir / "run_b"))
    add_relevance_clip(
        writer,
        "relevance/plain",
        _video("run_b", "relevance/plain", 0),
        plain,
        0,
        target=1,
        prediction=2,
        method="GradCAMTube",
        fps=FPS,
        class_names=CLASSES,
    )
    writer.close()


def _ramp(stops: list[tuple[float, int, int, int]], v: float) -> list[float]:
    for (p0, *c0), (p1, *c1) in zip(stops, stops[1:], strict=False):
        if v <= p1:
            f = (v - p0) / (p1 - p0)
            return [a + f * (b - a) for a, b in zip(c0, c1, strict=True)]
    return list(stops[-1][1:])


def expected_overlay(original: tuple[int, ...], value: float, scale: float, signed: bool, opacity):
    """The overlay pixel for relevance ``value``: quantised, colour-mapped, blended."""
    if signed:
        r = (round(127.5 + 127.5 * value / scale) - 127.5) / 127.5
    else:
        r = round(255 * value / scale) / 255
    if abs(r) < 0.5 / 255:
        r = 0.0
    colour = _ramp(WARM if r >= 0 else COLD, abs(r))
    alpha = opacity * abs(r)
    return [o * (1 - alpha) + c * alpha for o, c in zip(original, colour, strict=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    logdir = tmp_path_factory.mktemp("tb_logs")
    _write_logdir(logdir)
    port = _free_port()
    log = open(logdir.parent / "tensorboard.log", "wb")  # closed in the finally below
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tensorboard"),
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # the fast data server loads the logdir asynchronously
            assert process.poll() is None, (logdir.parent / "tensorboard.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/data/plugin/captum_video/tags") as r:
                    if r.read().count(b"relevance/") == 3:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "tensorboard did not serve the logdir"
            time.sleep(0.5)
        yield url, logdir
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _pixel(frame, canvas: str, x: int, y: int) -> list[int]:
    return frame.evaluate(
        "([id, x, y]) => Array.from(document.getElementById(id).getContext('2d')"
        ".getImageData(x, y, 1, 1).data)",
        [canvas, x, y],
    )


def _column(frame, x: int) -> list[list[int]]:
    return frame.evaluate(
        "(x) => { const c = document.getElementById('curve');"
        " const d = c.getContext('2d').getImageData(x, 0, 1, c.height).data;"
        " const out = []; for (let i = 0; i < d.length; i += 4)"
        " out.push([d[i], d[i + 1], d[i + 2], d[i + 3]]); return out; }",
        x,
    )


def _close(actual: list[int], expected, tol: float = 3) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual[:3], expected, strict=False))


def _wait_ready(frame, parts: int | None = None) -> None:
    condition = "document.body.dataset.status === 'ready'"
    if parts is not None:
        condition += f" && document.querySelectorAll('#parts button').length === {parts}"
    frame.wait_for_function(condition, timeout=30_000)


def _curve_x(t: int) -> int:
    left, width = 40, 640 - 40 - 8  # curveArea() in index.js
    return round(left + (t + 0.5) / T * width)


def test_plugin_in_tensorboard(server: tuple[str, Path], browser, tmp_path: Path) -> None:
    url, _ = server
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and ("captum_video" in m.text or "Content Security" in m.text)
            else None
        ),
    )
    page.goto(f"{url}/#captum_video")
    frame = page.wait_for_selector("iframe", timeout=60_000).content_frame()
    assert frame is not None and "plugin_entry.html?name=captum_video" in frame.url
    _wait_ready(frame, parts=3)

    # Initial selection: first run, first tag, latest step.
    assert frame.eval_on_selector_all("#run option", "os => os.map(o => o.value)") == [
        "run_a",
        "run_b",
    ]
    assert frame.eval_on_selector("#tag", "s => s.value") == "relevance/moving"
    assert frame.eval_on_selector("#step", "s => s.value") == "1"
    assert frame.eval_on_selector_all("#parts button", "bs => bs.map(b => b.textContent)") == [
        "joint",
        "spatial",
        "temporal",
    ]
    info = frame.eval_on_selector_all("#info dd", "ds => ds.map(d => d.textContent)")
    assert info[0] == "right (0)" and info[1].startswith("right (0), score 3") and "✓" in info[1]
    assert info[2] == "IntegratedGradients"

    # Scrub to frame 3 at full opacity and read pixels back.
    frame.fill("#opacity", "100")
    frame.fill("#frame", "3")
    frame.wait_for_function("document.body.dataset.frame === '3'")
    assert frame.text_content("#frame-label") == "frame 4 / 6"
    bg = background("run_a", "relevance/moving", 1, 3)
    assert _pixel(frame, "original", 7, 3)[:3] == list(bg)
    scale = 2.0
    square = expected_overlay(bg, 2.0 * 4 / T, scale, True, 1.0)  # joint square at frame 3
    assert _close(_pixel(frame, "overlay", 7, 3), square)
    assert _close(_pixel(frame, "overlay", 1, 3), bg)  # the square has moved on from col 1
    corner = expected_overlay(bg, -1.0, scale, True, 1.0)
    assert _close(_pixel(frame, "overlay", 14, 14), corner)
    assert _close(_pixel(frame, "overlay", 15, 0), bg)  # zero relevance: untouched

    # Curve: the orange marker sits on frame 3, the joint line passes where its sums put it.
    column = _column(frame, _curve_x(3))
    assert sum(_close(px, MARKER, 1) and px[3] == 255 for px in column) > 80
    high, low = 16.0, joint_curve(0)
    rows = []
    for t in (0, 1, T - 1):
        # One pixel inside the line's ends (butt caps end exactly on the first/last frame).
        x = _curve_x(t) + (1 if t == 0 else -1 if t == T - 1 else 0)
        blue = [y for y, px in enumerate(_column(frame, x)) if _close(px, CURVE_BLUE, 30)]
        expected_y = 8 + (high - joint_curve(t)) / (high - low) * 124
        assert blue and min(abs(y - expected_y) for y in blue) <= 3, (t, blue, expected_y)
        rows.append(sum(blue) / len(blue))
    assert rows[0] > rows[1] > rows[2]  # rising relevance is drawn upwards
    assert not any(_close(px, MARKER, 1) for px in _column(frame, _curve_x(1)))

    # Keyboard and curve clicks seek too.
    frame.press("#play", "ArrowRight")
    frame.wait_for_function("document.body.dataset.frame === '4'")
    frame.click("#curve", position={"x": _curve_x(1), "y": 60})
    frame.wait_for_function("document.body.dataset.frame === '1'")

    # Play advances the frames in a loop; pause stops them.
    frame.click("#play")
    assert frame.text_content("#play") == "Pause"
    frame.wait_for_function(
        "() => { const f = Number(document.body.dataset.frame);"
        " window.__seen = window.__seen || new Set(); window.__seen.add(f);"
        " return window.__seen.size >= 4; }",
        polling=20,
        timeout=15_000,
    )
    frame.click("#play")
    stopped = frame.evaluate("document.body.dataset.frame")
    page.wait_for_timeout(2.5 * 1000 / FPS)
    assert frame.evaluate("document.body.dataset.frame") == stopped
    t = int(stopped)
    bg = background("run_a", "relevance/moving", 1, t)
    assert _pixel(frame, "original", 0, 0)[:3] == list(bg)

    # Spatial and temporal parts: the overlay moves to each part's square, the joint one goes.
    frame.click("#parts button[data-part=spatial]")
    assert frame.get_attribute("#parts button[data-part=spatial]", "aria-pressed") == "true"
    assert _close(_pixel(frame, "overlay", 1, 9), expected_overlay(bg, 1.0, scale, True, 1.0))
    assert _close(_pixel(frame, "overlay", 9, 9), bg)
    assert _close(_pixel(frame, "overlay", 2 * t + 1, 3), bg)
    frame.click("#parts button[data-part=temporal]")
    assert _close(_pixel(frame, "overlay", 9, 9), expected_overlay(bg, 1.0, scale, True, 1.0))
    assert _close(_pixel(frame, "overlay", 1, 9), bg)
    # Opacity: half-way blends half as strongly.
    frame.fill("#opacity", "50")
    assert _close(_pixel(frame, "overlay", 9, 9), expected_overlay(bg, 1.0, scale, True, 0.5))
    frame.click("#parts button[data-part=joint]")

    # Another step of the same tag: same frame index, that step's pixels.
    frame.select_option("#step", "0")
    frame.wait_for_function("document.querySelector('#step').value === '0'")
    _wait_ready(frame, parts=3)
    assert _pixel(frame, "original", 0, 0)[:3] == list(
        background("run_a", "relevance/moving", 0, t)
    )

    # Another tag of the run: joint only, its own clip.
    frame.select_option("#tag", "relevance/still")
    _wait_ready(frame, parts=1)
    assert _pixel(frame, "original", 0, 0)[:3] == list(background("run_a", "relevance/still", 0, t))

    # Another run: its tag list, labels and pixels (unsigned relevance, warm only).
    frame.select_option("#run", "run_b")
    frame.wait_for_function("document.querySelector('#tag').value === 'relevance/plain'")
    _wait_ready(frame, parts=1)
    bg = background("run_b", "relevance/plain", 0, t)
    assert _pixel(frame, "original", 0, 0)[:3] == list(bg)
    assert _close(_pixel(frame, "overlay", 5, 5), expected_overlay(bg, 1.0, 1.0, False, 0.5))
    info = frame.eval_on_selector_all("#info dd", "ds => ds.map(d => d.textContent)")
    assert info[0] == "left (1)" and "down (2)" in info[1] and "✗" in info[1]
    assert info[2] == "GradCAMTube"

    page.screenshot(path=str(tmp_path / "tensorboard_plugin.png"))
    assert (tmp_path / "tensorboard_plugin.png").stat().st_size > 10_000
    assert problems == []
    page.close()


def test_empty_state_when_nothing_is_logged(server: tuple[str, Path], browser) -> None:
    url, _ = server
    page = browser.new_page()
    # The server has data; answer the plugin's listing with none, as on an empty logdir.
    page.route("**/data/plugin/captum_video/tags", lambda route: route.fulfill(json={}))
    page.goto(f"{url}/#captum_video")
    frame = page.wait_for_selector("iframe", timeout=60_000).content_frame()
    frame.wait_for_function("document.body.dataset.status === 'empty'", timeout=30_000)
    assert frame.is_visible("#empty") and not frame.is_visible("#viewer")
    assert "No relevance clips logged yet" in frame.text_content("#empty")
    page.close()


def test_reload_finds_new_steps_and_keeps_the_selection(server: tuple[str, Path], browser) -> None:
    url, logdir = server
    page = browser.new_page()
    page.goto(f"{url}/#captum_video")
    frame = page.wait_for_selector("iframe", timeout=60_000).content_frame()
    _wait_ready(frame, parts=3)
    frame.select_option("#step", "0")
    frame.wait_for_function("document.querySelector('#step').value === '0'")
    _wait_ready(frame, parts=3)
    frame.fill("#frame", "2")
    frame.wait_for_function("document.body.dataset.frame === '2'")

    writer = SummaryWriter(str(logdir / "run_a"))  # a new step arrives while we watch
    parts = _moving_parts()
    add_relevance_clip(
        writer, "relevance/moving", _video("run_a", "relevance/moving", 2), parts["joint"], 2
    )
    writer.close()
    deadline = time.monotonic() + 60
    while (
        b'"max_step": 2'
        not in urllib.request.urlopen(f"{url}/data/plugin/captum_video/tags").read()
    ):
        assert time.monotonic() < deadline, "tensorboard did not pick up the new step"
        time.sleep(0.5)

    page.click("app-header-reload button.reload-button")  # TensorBoard's own reload button
    frame.wait_for_function(
        "Array.from(document.querySelectorAll('#step option')).map(o => o.value).includes('2')",
        timeout=30_000,
    )
    assert frame.eval_on_selector("#step", "s => s.value") == "0"
    assert frame.evaluate("document.body.dataset.frame") == "2"
    bg = background("run_a", "relevance/moving", 0, 2)
    assert _pixel(frame, "original", 0, 0)[:3] == list(bg)
    page.close()
