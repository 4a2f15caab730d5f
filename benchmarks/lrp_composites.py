"""LRP composites of DeepTaylor3D: the time of each against a forward + backward pass.

Every named composite of :data:`captum_video.attr.COMPOSITES` (by default the deep Taylor
reference ``zplus-zb`` and the layer-dependent ``epsilon-*`` ones) explains torchvision's r3d_18
with random weights and randomised BatchNorm statistics, timed as whole calls by
:func:`~benchmarks._common.interleaved_times` together with the baseline,
``forward_backward_to_input`` (one bare forward + backward to the input: what any gradient
method costs). Ratios (``over_forward_backward_to_input``) are taken round by round against
the baseline of the same round: median, min and max over the rounds, for wall time and for
process CPU time (which other processes on a shared machine disturb less). Each entry also
reports how well relevance is conserved (``relative_delta``: |logit - sum R| / |logit|).

Why the costs differ: an epsilon layer needs no extra pass (its modified gradient is the
layer's own gradient, rescaled), a z+ layer one extra forward of the layer and one
transposed map instead of the layer's own, a gamma layer the same plus the layer's own
transposed map where relevance reaches negative outputs (convolutions that feed a residual
sum, not a ReLU), and the z^B / flat input layer a few extra maps of the first convolution.

``python -m benchmarks.lrp_composites --quick`` (1 x 3 x 8 x 56 x 56) or ``--full``
(16 x 112 x 112).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, ratio, video_model
from captum_video.attr import COMPOSITES, DeepTaylor3D

#: The contender the composites' times are divided by.
BASELINE = "forward_backward_to_input"
#: Composites timed by default: the deep Taylor reference and the layer-dependent ones.
DEFAULT_COMPOSITES = (
    "zplus-zb",
    "epsilon-gamma-box",
    "epsilon-box",
    "epsilon-plus",
    "epsilon-plus-flat",
)


def _randomize_batch_norm(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def _forward_backward_to_input(model: nn.Module, x: Tensor, target: int) -> Tensor:
    leaf = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf)[:, target].sum(), leaf)
    return grad


def _explainer(dt: DeepTaylor3D, x: Tensor, target: int) -> Callable[[], Tensor]:
    return lambda: cast(Tensor, dt.attribute(x, target=target))


def run(
    frames: int,
    side: int,
    repeats: int,
    device: torch.device,
    composites: tuple[str, ...] = DEFAULT_COMPOSITES,
) -> dict[str, Any]:
    """Time every composite against the baseline on one r3d_18 clip.

    Args:
        frames (int): clip length ``T``.
        side (int): clip height and width.
        repeats (int): timed rounds (after one warm-up round).
        device (torch.device): where to run.
        composites (tuple of str, optional): names from :data:`COMPOSITES`.
            Default: :data:`DEFAULT_COMPOSITES`

    Returns:
        dict: per contender its timings, its ratios to the baseline (wall and CPU) and, for
        the composites, the conservation of relevance.

    Example::

        >>> results = run(4, 32, 1, torch.device("cpu"), ("epsilon-box",))  # doctest: +SKIP
        >>> results["epsilon-box"]["over_forward_backward_to_input"]["median"]  # doctest: +SKIP
        1.1
    """
    unknown = [name for name in composites if name not in COMPOSITES]
    if unknown:
        raise ValueError(f"unknown composites {unknown}; choose from {sorted(COMPOSITES)}")
    torch.manual_seed(0)
    model = _randomize_batch_norm(video_model("r3d_18", num_classes=10, device=device))
    x = torch.rand(1, 3, frames, side, side, device=device)  # inside the Kinetics z^B bounds
    target = 3
    with torch.no_grad():
        logit = float(model(x)[0, target])
    methods: dict[str, Callable[[], Tensor]] = {
        BASELINE: lambda: _forward_backward_to_input(model, x, target)
    }
    for name in composites:
        methods[name] = _explainer(DeepTaylor3D(model, composite=name), x, target)
    last: dict[str, Tensor] = {}

    def keeping(name: str, fn: Callable[[], Tensor]) -> Callable[[], None]:
        return lambda: last.__setitem__(name, fn())

    times = interleaved_times({n: keeping(n, fn) for n, fn in methods.items()}, device, repeats)
    results: dict[str, Any] = {"input": list(x.shape), "model": "r3d_18", "target_logit": logit}
    for name in methods:
        entry: dict[str, Any] = dict(times[name])
        entry[f"over_{BASELINE}"] = ratio(times, name, BASELINE)
        entry[f"cpu_over_{BASELINE}"] = ratio(times, name, BASELINE, cpu=True)
        if name != BASELINE:
            relevance_sum = float(last[name].detach().sum())
            entry["relevance_sum"] = relevance_sum
            entry["relative_delta"] = abs(logit - relevance_sum) / abs(logit)
        results[name] = entry
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON.

    Args:
        argv (list of str, optional): ``--quick`` (8x56x56, default) or ``--full``
            (16x112x112), ``--repeats``, ``--device``, ``--composites NAME ...``,
            ``--out FILE.json``. Default: ``sys.argv``

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1"])  # doctest: +SKIP
        >>> payload["epsilon-gamma-box"]["over_forward_backward_to_input"]  # doctest: +SKIP
        {'median': 1.5, 'min': 1.5, 'max': 1.5}
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1 x 3 x 8 x 56 x 56 (default)")
    size.add_argument("--full", action="store_true", help="1 x 3 x 16 x 112 x 112")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (after 1 warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--composites",
        nargs="+",
        default=list(DEFAULT_COMPOSITES),
        choices=sorted(COMPOSITES),
        help="composites to time",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    frames, side = (16, 112) if args.full else (8, 56)
    repeats = args.repeats or (3 if args.full else 2)
    results = run(frames, side, repeats, torch.device(args.device), tuple(args.composites))
    payload = {"mode": "full" if args.full else "quick", "baseline": BASELINE, **results}
    return emit("lrp_composites", payload, args.out)


if __name__ == "__main__":
    main()
