"""Test helpers: check that a method leaves the caller's model and tensors as they were."""

from __future__ import annotations

import shutil
from typing import Any

import torch
from torch import nn


def model_snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything a well-behaved attribution must leave unchanged on a model."""
    return {
        "modules": [(name, type(m), id(m)) for name, m in model.named_modules()],
        "hooks": [
            (
                name,
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})),
            )
            for name, m in model.named_modules()
        ],
        "params": {k: (v.detach().clone(), v.requires_grad) for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "attrs": [sorted(vars(m).keys()) for m in model.modules()],
    }


def assert_model_unchanged(before: dict[str, Any], model: nn.Module) -> None:
    """Assert ``model`` matches a :func:`model_snapshot` taken earlier."""
    after = model_snapshot(model)
    assert before["modules"] == after["modules"], "modules were replaced or added"
    assert before["hooks"] == after["hooks"], "hooks were left on the model"
    assert before["training"] == after["training"], "train/eval mode changed"
    assert before["attrs"] == after["attrs"], "attributes were left on modules"
    assert before["params"].keys() == after["params"].keys()
    for key, (value, req) in before["params"].items():
        new_value, new_req = after["params"][key]
        assert req == new_req, f"requires_grad of {key} changed"
        assert torch.equal(value, new_value), f"parameter {key} changed"
    for key, value in before["buffers"].items():
        assert torch.equal(value, after["buffers"][key]), f"buffer {key} changed"


#: Flags that let Debian's Chromium run headless here: as root, with no GPU and no network
#: beyond localhost (background services would try to reach the internet).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The Chromium binary browser tests drive, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None
