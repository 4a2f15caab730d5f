"""Video-TCAV on MovingShapes (fixed seeds): a motion model uses the dynamic concept "object
moving in the class's direction" and not its static twin; an appearance model uses the static
colour concept and not a colourless moving object."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import masks_to_boxes

from captum_video.concept import VideoConcept, VideoTCAV
from captum_video.datasets import MovingShapes

LAYERS = ["stem", "layer1", "layer2", "layer3"]
CROP = {"num_frames": 16, "size": (32, 32), "margin": 0.5}

pytestmark = pytest.mark.slow


def _render(variant: str, label: int | None, n: int, seed: int):
    """``n`` examples of class ``label`` (random classes when None), rendered directly."""
    data = MovingShapes(variant, num_samples=1)
    g = torch.Generator().manual_seed(seed)
    labels = (
        torch.randint(data.num_classes, (n,), generator=g).tolist()
        if label is None
        else [label] * n
    )
    return [data.render(y, g) for y in labels]


def _tracked(variant: str, label: int, n: int, seed: int, cid: int, name: str, static: bool):
    """A concept from the deciding object's track (boxes from the ground-truth mask)."""
    items = _render(variant, label, n, seed)
    boxes = []
    for _, _, mask in items:
        box = masks_to_boxes(mask)
        box[:, 2:] += 1  # masks_to_boxes gives inclusive corners
        boxes.append(box)
    videos = [clip for clip, _, _ in items]
    return VideoConcept.from_tracks(cid, name, videos, boxes, static=static, **CROP)


def _randoms(variant: str, count: int = 8, n: int = 10) -> list[VideoConcept]:
    """Random sets: clips of all classes from the training distribution."""
    return [
        VideoConcept(
            100 + j,
            f"random{j}",
            kind="random",
            clips=torch.stack([c for c, _, _ in _render(variant, None, n, 500 + j)]),
        )
        for j in range(count)
    ]


def _inputs(variant: str, label: int, n: int = 10) -> torch.Tensor:
    return torch.stack([clip for clip, _, _ in _render(variant, label, n, 77)])


def test_motion_model_uses_the_dynamic_concept(demo_model) -> None:
    right = MovingShapes("motion", num_samples=1).classes.index("right")
    moving = _tracked("motion", right, 12, 11, 0, "moving_right", static=False)
    still = _tracked("motion", right, 12, 11, 1, "still_square", static=True)
    tcav = VideoTCAV(demo_model, LAYERS)
    sets = tcav.experimental_sets([moving, still], _randoms("motion"))
    result = tcav.significance(tcav.interpret(_inputs("motion", right), sets, target=right))
    for layer in LAYERS:
        dyn, sta = result.row("moving_right", layer), result.row("still_square", layer)
        assert dyn["mean"] >= sta["mean"], result.table()
        assert dyn["cav_accuracy"] > 0.7 and sta["cav_accuracy"] > 0.7  # CAVs are real
    # Where the model is non-linear (before the GAP + linear head) the moving concept is
    # significant after Bonferroni, its static twin is not, and the gap is large.
    for layer in ["stem", "layer1", "layer2"]:
        assert result.is_significant("moving_right", layer), result.table()
        assert not result.is_significant("still_square", layer), result.table()
        gap = result.row("moving_right", layer)["mean"] - result.row("still_square", layer)["mean"]
        assert gap > 0.3, result.table()


def test_appearance_model_uses_the_static_colour_concept(appearance_model) -> None:
    red = MovingShapes("appearance", num_samples=1).classes.index("red")
    right = MovingShapes("motion", num_samples=1).classes.index("right")
    red_still = _tracked("appearance", red, 12, 1, 0, "red_still", static=True)
    red_moving = _tracked("appearance", red, 12, 1, 1, "red_moving", static=False)
    white_moving = _tracked("motion", right, 12, 2, 2, "white_moving", static=False)
    tcav = VideoTCAV(appearance_model, ["stem", "layer1"])
    sets = tcav.experimental_sets([red_still, red_moving, white_moving], _randoms("appearance"))
    result = tcav.significance(tcav.interpret(_inputs("appearance", red), sets, target=red))
    for layer in ["stem", "layer1"]:
        colour = result.row("red_still", layer)
        # The static colour concept beats the colourless moving object ...
        assert colour["mean"] > result.row("white_moving", layer)["mean"] + 0.5, result.table()
        # ... and motion adds nothing to it: the moving red twin does not score higher.
        assert colour["mean"] >= result.row("red_moving", layer)["mean"], result.table()
    assert result.is_significant("red_still", "stem"), result.table()
    assert not result.is_significant("white_moving", "stem") or (
        result.row("white_moving", "stem")["mean"] < 0.1  # significant only as "negative"
    ), result.table()
