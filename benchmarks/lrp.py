"""DeepTaylor3D speed and conservation on torchvision's r3d_18, against three baselines.

Every contender is timed as a whole call, all of them together by
:func:`~benchmarks._common.interleaved_times` on the same model and clip:

* ``forward_backward_to_input``: one bare forward + backward to the input (what any
  gradient method costs), the baseline of the ratios;
* ``deep_taylor_3d``: :class:`~captum_video.attr.DeepTaylor3D`;
* ``zennit``: Zennit with the same rules (z^B first conv, z+, Pass, Norm), its own
  ``SequentialMergeBatchNorm``, and the residual sums left as they are (Zennit has no video
  ResNet canonizer, and its hooks take single-input modules only, so Captum's
  ``Addition_Module`` cannot stand in), which is why its relevance is not conserved;
* ``captum_lrp_rules_by_hand``: Captum's own two-pass ``LRP`` with our 3-D rules attached by
  hand to the canonized model.

Random weights with randomised BatchNorm statistics (no download is possible). Ratios
(``over_forward_backward_to_input``) are round by round against the baseline timed in the
same call: median, min and max over the rounds. ``python -m benchmarks.lrp --quick``.

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

from benchmarks._common import emit, interleaved_times, peak_memory, ratio, video_model
from captum_video.attr import DeepTaylor3D
from captum_video.registry import NORMALIZATION_PRESETS, bounds_from_normalization

#: The contender the other methods' times are divided by.
BASELINE = "forward_backward_to_input"


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


def _forward_backward_to_input(model: nn.Module, x: Tensor, target: int) -> Tensor:
    leaf = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf)[:, target].sum(), leaf)
    return grad


def _zennit(model: nn.Module, x: Tensor, target: int) -> Tensor:
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import SpecialFirstLayerMapComposite
    from zennit.rules import Norm, Pass, ZBox, ZPlus
    from zennit.types import Activation, AvgPool, Convolution, Linear

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
        one_hot = torch.eye(int(model.fc.out_features), device=x.device)[[target] * len(x)]
        logits, rel = attributor(x.clone(), one_hot)
    return rel * logits[:, target].detach().view(-1, 1, 1, 1, 1)


def _captum_lrp(model: nn.Module, x: Tensor, target: int) -> Tensor:
    from captum.attr import LRP
    from captum.attr._utils.custom_modules import Addition_Module

    from captum_video.attr import (
        NoInplaceReLU,
        PassRule,
        ProportionalRule,
        ZBRule,
        ZPlusRule,
        canonized,
        default_canonizers,
    )

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


def run(
    frames: int, side: int, repeats: int, device: torch.device, skip: list[str], split: bool
) -> dict[str, Any]:
    """Time the methods (and with ``split`` the SpatioTemporalSplit costs) on one clip.

    Args:
        frames (int): clip length ``T``.
        side (int): clip height and width.
        repeats (int): timed rounds (after one warm-up round).
        device (torch.device): where to run.
        skip (list of str): methods to leave out (not the baseline).
        split (bool): also time :func:`_split_costs`.

    Returns:
        dict: per method its timings, ratio to the baseline and relevance conservation.
    """
    torch.manual_seed(0)
    model = _randomize_batch_norm(video_model("r3d_18", num_classes=10, device=device))
    x = torch.rand(1, 3, frames, side, side, device=device)
    target = 3
    with torch.no_grad():
        logit = float(model(x)[0, target])
    dt = DeepTaylor3D(model)
    methods: dict[str, Callable[[], Tensor]] = {
        BASELINE: lambda: _forward_backward_to_input(model, x, target),
        "deep_taylor_3d": lambda: dt.attribute(x, target=target),
        "zennit": lambda: _zennit(model, x, target),
        "captum_lrp_rules_by_hand": lambda: _captum_lrp(model, x, target),
    }
    methods = {name: fn for name, fn in methods.items() if name not in skip}
    last: dict[str, Tensor] = {}  # each method's relevance, for the conservation check

    def keeping(name: str, fn: Callable[[], Tensor]) -> Callable[[], None]:
        return lambda: last.__setitem__(name, fn())

    times = interleaved_times({n: keeping(n, fn) for n, fn in methods.items()}, device, repeats)
    results: dict[str, Any] = {"input": list(x.shape), "model": "r3d_18", "target_logit": logit}
    for name in methods:
        entry: dict[str, Any] = dict(times[name])
        entry[f"over_{BASELINE}"] = ratio(times, name, BASELINE)
        if name != BASELINE:
            relevance_sum = float(last[name].detach().sum())
            entry["relevance_sum"] = relevance_sum
            entry["relative_delta"] = abs(logit - relevance_sum) / abs(logit)
        results[name] = entry
    if split:
        results["spatiotemporal_split"] = _split_costs(dt, x, target, device, repeats)
    return results


def _split_costs(
    dt: Any, x: Tensor, target: int, device: torch.device | str, repeats: int
) -> dict[str, Any]:
    """SpatioTemporalSplit(DeepTaylor3D): batched vs one motion-removed clip at a time.

    Each entry has its timings, ``x_one_pass`` (its time over one DeepTaylor3D pass, round
    by round) and its peak memory; ``batched_speedup`` is sequential over batched.
    """
    from captum_video.attr import SpatioTemporalSplit

    split = SpatioTemporalSplit(dt)
    fns: dict[str, Callable[[], Any]] = {
        "one_pass": lambda: dt.attribute(x, target=target),
        "batched": lambda: split.attribute(x, target=target),
        "sequential": lambda: split.attribute(x, target=target, internal_batch_size=1),
    }
    times = interleaved_times(fns, device, repeats)
    out: dict[str, Any] = {"passes": x.shape[2] + 1}
    for name, fn in fns.items():
        entry: dict[str, Any] = dict(times[name])
        entry["x_one_pass"] = ratio(times, name, "one_pass")
        entry.update(peak_memory(fn, device))
        out[name] = entry
    out["batched_speedup"] = ratio(times, "sequential", "batched")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON.

    Args:
        argv (list of str, optional): ``--quick`` (8x56x56, default) or ``--full``
            (16x112x112), ``--repeats``, ``--device``, ``--skip NAME ...``, ``--split``,
            ``--out FILE.json``. Default: ``sys.argv``

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1", "--skip", "zennit"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1 x 3 x 8 x 56 x 56 (default)")
    size.add_argument("--full", action="store_true", help="1 x 3 x 16 x 112 x 112")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (after 1 warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    parser.add_argument("--split", action="store_true", help="also time SpatioTemporalSplit")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if BASELINE in args.skip:
        parser.error(f"{BASELINE} is the baseline of every ratio and cannot be skipped")
    frames, side = (16, 112) if args.full else (8, 56)
    repeats = args.repeats or (3 if args.full else 2)
    results = run(frames, side, repeats, torch.device(args.device), args.skip, args.split)
    return emit("lrp", {"mode": "full" if args.full else "quick", **results}, args.out)


if __name__ == "__main__":
    main()
