"""The patches in ``upstream/`` apply to the installed Captum and do what they claim.

Each patch's ``captum/`` part is applied with ``git apply`` to a copy of the installed
``captum`` package (the patches are against Captum 0.9.0, the version we pin; their test
files are checked by ``upstream/check.sh`` against a Captum checkout). The patched copy is
imported in a subprocess, and the same checks run against the installed, unpatched Captum
in this process, so the test fails if a patch stops applying, breaks, or does nothing:

* 0001: ``captum.attr.LRP`` attributes a bias-free Conv3d + BatchNorm3d + AvgPool3d +
  AdaptiveAvgPool3d + Linear model with relevance that sums to the target logit; unpatched
  Captum raises a ``TypeError`` for that model.
* 0002: ``LayerGradCam(..., stop_gradient_at_layer=True)`` gives the same attributions as
  without it and records no autograd graph below the layer; unpatched Captum does not
  know the argument.

Only skipped where the ``git`` binary is missing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "upstream"
PATCHES = sorted(UPSTREAM.glob("[0-9][0-9][0-9][0-9]-*.patch"))
LRP_PATCH = UPSTREAM / "0001-lrp-3d-layers.patch"
STOP_PATCH = UPSTREAM / "0002-layer-gradient-stop-at-layer.patch"
GIT = shutil.which("git") or ""

pytestmark = pytest.mark.skipif(not GIT, reason="needs the git binary")

# Defines run_checks(), which returns what the checks found with the captum it imports.
_CHECKS = r"""
def run_checks():
    import captum
    import torch
    from captum.attr import LRP, LayerGradCam
    from torch import nn

    class Net3d(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv3d(3, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm3d(4)
            self.relu1 = nn.ReLU()
            self.pool1 = nn.AvgPool3d(2)
            self.conv2 = nn.Conv3d(4, 8, 3, padding=1, bias=False)
            self.relu2 = nn.ReLU()
            self.pool2 = nn.AdaptiveAvgPool3d(1)
            self.fc = nn.Linear(8, 5, bias=False)

        def forward(self, x):
            x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
            x = self.pool2(self.relu2(self.conv2(x)))
            return self.fc(x.flatten(1))

    report = {"captum_file": captum.__file__}
    generator = torch.Generator().manual_seed(0)
    model = Net3d().eval()
    with torch.no_grad():
        for layer in (model.conv1, model.conv2, model.fc):
            layer.weight.uniform_(-0.5, 0.5, generator=generator)
        # bias-free batch norm (zero running mean and shift), but not the identity
        model.bn1.weight.uniform_(0.5, 1.5, generator=generator)
        model.bn1.running_var.uniform_(0.5, 1.5, generator=generator)
        x = torch.randn(1, 3, 4, 8, 8, generator=generator)
        logits = model(x)
    target = int(logits[0].abs().argmax())
    report["logit"] = float(logits[0, target])

    try:
        relevance = LRP(model).attribute(x, target=target)
        report["lrp_shape"] = list(relevance.shape)
        report["lrp_sum"] = float(relevance.detach().double().sum())
    except Exception as exc:
        report["lrp_error"] = f"{type(exc).__name__}: {exc}"

    below = []
    handle = model.conv1.register_forward_hook(
        lambda module, inp, out: below.append(out.requires_grad)
    )
    gradcam = LayerGradCam(model, model.conv2)
    expected = gradcam.attribute(x, target=target)
    try:
        stopped = gradcam.attribute(x, target=target, stop_gradient_at_layer=True)
        report["gradcam_max_abs_diff"] = float((stopped - expected).abs().max())
        report["gradcam_max_abs"] = float(expected.abs().max())
        report["graph_below_layer"] = below
    except Exception as exc:
        report["gradcam_error"] = f"{type(exc).__name__}: {exc}"
    handle.remove()
    return report
"""

# Runs the checks with sys.path[0] = argv[1] and prints their JSON report.
_SUBPROCESS = (
    "import json, sys\nsys.path.insert(0, sys.argv[1])\n"
    + _CHECKS
    + "\nprint(json.dumps(run_checks()))\n"
)


def _installed_captum() -> Path:
    spec = importlib.util.find_spec("captum")
    assert spec is not None and spec.submodule_search_locations, "captum is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def _copy_and_patch(dest: Path, patches: list[Path]) -> subprocess.CompletedProcess[str]:
    """Copy the installed captum package to ``dest/captum`` and ``git apply`` the
    ``captum/`` part of ``patches`` there; returns the last ``git apply`` run."""
    shutil.copytree(
        _installed_captum(), dest / "captum", ignore=shutil.ignore_patterns("__pycache__")
    )
    # dest becomes its own repository, so git apply never looks at an enclosing one
    subprocess.run([GIT, "init", "-q"], cwd=dest, check=True)
    result = subprocess.CompletedProcess(args=[], returncode=0, stdout="", stderr="")
    for patch in patches:
        result = subprocess.run(
            [GIT, "apply", "--verbose", "--include=captum/*", str(patch)],
            cwd=dest,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            break
    return result


@pytest.fixture(scope="module")
def patched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The checks run in a fresh interpreter (-I: no PYTHONPATH, no cwd on sys.path)
    that imports captum from a copy with all patches applied."""
    dest = tmp_path_factory.mktemp("captum_patched")
    result = _copy_and_patch(dest, PATCHES)
    assert result.returncode == 0, result.stderr
    run = subprocess.run(
        [sys.executable, "-I", "-c", _SUBPROCESS, str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["captum_file"].startswith(str(dest)), report["captum_file"]
    return report


@pytest.fixture(scope="module")
def unpatched() -> dict[str, Any]:
    """The checks run here, with the installed captum."""
    namespace: dict[str, Any] = {}
    exec(_CHECKS, namespace)
    report: dict[str, Any] = namespace["run_checks"]()
    assert Path(report["captum_file"]).parent == _installed_captum()
    return report


def test_patches_are_there() -> None:
    assert LRP_PATCH in PATCHES
    assert STOP_PATCH in PATCHES


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_patch_applies_to_installed_captum(patch: Path, tmp_path: Path) -> None:
    result = _copy_and_patch(tmp_path, [patch])
    assert result.returncode == 0, result.stderr
    # every captum/ file of the patch was applied, none skipped
    touched = {
        line.split(" b/", 1)[1]
        for line in patch.read_text().splitlines()
        if line.startswith("diff --git a/captum/")
    }
    assert touched
    for path in touched:
        assert f"Applied patch {path} cleanly." in result.stderr, result.stderr


def test_lrp_patch_conserves_relevance_of_3d_model(patched: dict[str, Any]) -> None:
    assert "lrp_error" not in patched, patched["lrp_error"]
    assert patched["lrp_shape"] == [1, 3, 4, 8, 8]
    assert abs(patched["logit"]) > 1e-3
    assert patched["lrp_sum"] == pytest.approx(patched["logit"], rel=1e-4)


def test_unpatched_captum_lrp_raises_on_3d_model(unpatched: dict[str, Any]) -> None:
    assert "lrp_sum" not in unpatched
    assert unpatched["lrp_error"].startswith("TypeError: Module of type")
    assert "Conv3d" in unpatched["lrp_error"]


def test_stop_gradient_patch_same_gradcam_without_graph_below(patched: dict[str, Any]) -> None:
    assert "gradcam_error" not in patched, patched["gradcam_error"]
    assert patched["gradcam_max_abs"] > 0
    assert patched["gradcam_max_abs_diff"] <= 1e-6 * patched["gradcam_max_abs"]
    # conv1 (below the layer) records a graph without the option, none with it
    assert patched["graph_below_layer"] == [True, False]


def test_unpatched_captum_has_no_stop_gradient_option(unpatched: dict[str, Any]) -> None:
    assert "stop_gradient_at_layer" in unpatched["gradcam_error"]
