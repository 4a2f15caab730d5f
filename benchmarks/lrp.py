"""DeepTaylor3D speed and conservation on torchvision's r3d_18, against three baselines.

* ``floor``: one bare forward + backward to the input (what any gradient method costs);
* ``zennit``: Zennit with the same rules (z^B first conv, z+, Pass, Norm), its own
  ``SequentialMergeBatchNorm``, and the residual sums left as they are (Zennit has no video
  ResNet canonizer, and its hooks take single-input modules only, so Captum's
  ``Addition_Module`` cannot stand in), which is why its relevance is not conserved;
* ``captum_lrp``: Captum's own two-pass ``LRP`` with our 3-D rules attached by hand to the
  canonized model.

Random weights with randomised BatchNorm statistics (no download is possible); ratios are
against the floor measured in the same process. ``python -m benchmarks.lrp --quick``.

``--split`` also times :class:`~captum_video.attr.SpatioTemporalSplit` around DeepTaylor3D
(T + 1 passes: the clip and T motion-removed clips) with all motion-removed clips in one
batch against one at a time (``internal_batch_size=1``), interleaved, with the peak memory
of each, in multiples of one DeepTaylor3D pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, peak_memory, time_fn


def _randomize_batch_norm(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def _floor(model: nn.Module, x: Tensor, target: int) -> Tensor:
    leaf = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf)[:, target].sum(), leaf)
    return grad


def _zennit(model: nn.Module, x: Tensor, target: int) -> Tensor:
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import SpecialFirstLayerMapComposite
    from zennit.rules import Norm, Pass, ZBox, ZPlus
    from zennit.types import Activation, AvgPool, Convolution, Linear

    from captum_video.attr import bounds_from_normalization
    from captum_video.io import NORMALIZATION_PRESETS

    low, high = bounds_from_normalization(*NORMALIZATION_PRESETS["kinetics"])
    composite = SpecialFirstLayerMapComposite(
        layer_map=[
            (Activation, Pass()),
            (AvgPool, Norm()),
            (Convolution, ZPlus(zero_params="bias")),
            (Linear, ZPlus(zero_params="bias")),
        ],
        first_map=[(Convolution, ZBox(low.view(1, 3, 1, 1, 1), high.view(1, 3, 1, 1, 1)))],
        canonizers=[SequentialMergeBatchNorm()],
    )
    with Gradient(model=model, composite=composite) as attributor:
        logits, rel = attributor(x.clone(), torch.eye(logits_dim(model))[[target] * len(x)])
    return rel * logits[:, target].detach().view(-1, 1, 1, 1, 1)


def logits_dim(model: nn.Module) -> int:
    return int(model.fc.out_features)


def _captum_lrp(model: nn.Module, x: Tensor, target: int) -> Tensor:
    from captum.attr import LRP
    from captum.attr._utils.custom_modules import Addition_Module

    from captum_video.attr import (
        NoInplaceReLU,
        PassRule,
        ProportionalRule,
        ZBRule,
        ZPlusRule,
        bounds_from_normalization,
        canonized,
        default_canonizers,
    )
    from captum_video.io import NORMALIZATION_PRESETS

    bounds = bounds_from_normalization(*NORMALIZATION_PRESETS["kinetics"])
    with canonized(model, [*default_canonizers(), NoInplaceReLU()]):
        first = True
        for m in model.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                m.rule = ZBRule(*bounds) if first else ZPlusRule()  # type: ignore[assignment]
                first = False
            elif isinstance(m, nn.BatchNorm3d):
                m.rule = PassRule()  # type: ignore[assignment]
            elif isinstance(m, (nn.AdaptiveAvgPool3d, Addition_Module)):
                m.rule = ProportionalRule()  # type: ignore[assignment]
        try:
            rel = LRP(model).attribute(x.clone(), target=target)  # removes the rules it used
        finally:
            for m in model.modules():
                if "rule" in vars(m):
                    del m.rule
    return rel


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1 x 3 x 8 x 56 x 56 (default)")
    size.add_argument("--full", action="store_true", help="1 x 3 x 16 x 112 x 112")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (after 1 warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    parser.add_argument("--split", action="store_true", help="also time SpatioTemporalSplit")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    frames, side = (16, 112) if args.full else (8, 56)
    repeats = args.repeats or (3 if args.full else 2)

    from captum_video.attr import DeepTaylor3D
    from captum_video.models import load_torchvision_model

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = _randomize_batch_norm(load_torchvision_model("r3d_18", num_classes=10)).to(device)
    x = torch.rand(1, 3, frames, side, side, device=device)
    target = 3
    with torch.no_grad():
        logit = float(model(x)[0, target])
    dt = DeepTaylor3D(model)
    methods: dict[str, Callable[[], Tensor]] = {
        "floor_forward_backward": lambda: _floor(model, x, target),
        "deep_taylor_3d": lambda: dt.attribute(x, target=target),
        "zennit": lambda: _zennit(model, x, target),
        "captum_lrp_rules_by_hand": lambda: _captum_lrp(model, x, target),
    }
    results: dict[str, Any] = {"input": list(x.shape), "model": "r3d_18", "target_logit": logit}
    floor = None
    for name, fn in methods.items():
        if name in args.skip:
            continue
        last: list[Tensor] = []
        timing = time_fn(lambda fn=fn, last=last: last.append(fn()), device, repeats, 1)
        entry: dict[str, Any] = dict(timing)
        if name == "floor_forward_backward":
            floor = timing["median_s"]
        else:
            rel = last[-1].detach()
            entry["relevance_sum"] = float(rel.sum())
            entry["relative_delta"] = abs(logit - float(rel.sum())) / abs(logit)
        if floor is not None:
            entry["x_floor"] = timing["median_s"] / floor
        results[name] = entry
    if args.split:
        results["spatiotemporal_split"] = _split_costs(dt, x, target, device, repeats)
    return emit("lrp", results, args.out)


def _split_costs(
    dt: Any, x: Tensor, target: int, device: torch.device | str, repeats: int
) -> dict[str, Any]:
    """SpatioTemporalSplit(DeepTaylor3D): batched vs one motion-removed clip at a time."""
    from captum_video.attr import SpatioTemporalSplit

    split = SpatioTemporalSplit(dt)
    fns: dict[str, Callable[[], Any]] = {
        "one_pass": lambda: dt.attribute(x, target=target),
        "batched": lambda: split.attribute(x, target=target),
        "sequential": lambda: split.attribute(x, target=target, internal_batch_size=1),
    }
    times = interleaved_times(fns, device, repeats)
    one = times["one_pass"]["median_s"]
    out: dict[str, Any] = {"passes": x.shape[2] + 1}
    for name, fn in fns.items():
        entry: dict[str, Any] = dict(times[name])
        entry["x_one_pass"] = times[name]["median_s"] / one
        entry.update(peak_memory(fn, device))
        out[name] = entry
    out["batched_speedup"] = times["sequential"]["median_s"] / times["batched"]["median_s"]
    return out


if __name__ == "__main__":
    main()
