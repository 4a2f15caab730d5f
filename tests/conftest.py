"""Shared fixtures and the auto-skip rules for the ``gpu`` and ``browser`` markers."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from captum_video.datasets import MovingShapes
from captum_video.models import load_demo_model
from tests.helpers import chromium_path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    no_browser = pytest.mark.skip(reason="needs chromium on PATH and the playwright package")
    has_browser = chromium_path() is not None and importlib.util.find_spec("playwright") is not None
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_cuda)
        if "browser" in item.keywords and not has_browser:
            if os.environ.get("CI") and os.environ.get("CAPTUM_VIDEO_REQUIRE_BROWSER"):
                continue  # CI installs chromium: let a missing browser fail loudly there
            item.add_marker(no_browser)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


@pytest.fixture(scope="session")
def demo_model() -> torch.nn.Module:
    """The bundled C3DSmall trained on MovingShapes("motion")."""
    return load_demo_model("motion")


@pytest.fixture(scope="session")
def appearance_model() -> torch.nn.Module:
    """The bundled C3DSmall trained on MovingShapes("appearance")."""
    return load_demo_model("appearance")


@pytest.fixture(scope="session")
def motion_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eight held-out MovingShapes("motion") clips: (clips, labels, masks)."""
    return MovingShapes("motion", num_samples=8, seed=4242).tensors()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Runs a test on the CPU and, where CUDA is present, on the GPU."""
    return torch.device(request.param)
