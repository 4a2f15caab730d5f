"""``captum-video demo``: explain a synthetic clip with the bundled demo model (no download)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_video.datasets import MovingShapes
from captum_video.explainers import make_explainer, predict
from captum_video.models import demo_model_info, load_demo_model
from captum_video.relevance import reduce_channels, relevance_per_frame

__all__ = ["DEMO_METHODS", "run_demo"]


def _write_outputs(
    out: Path,
    name: str,
    video: Tensor,
    relevance: Tensor,
    info: dict[str, Any],
) -> list[Path]:
    """Save one explained clip: its relevance tensor and a JSON summary."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    tensor_path = out / f"{name}.pt"
    torch.save({"video": video.cpu(), "relevance": relevance.cpu(), **info}, tensor_path)
    written.append(tensor_path)
    summary = out / f"{name}.json"
    curve = relevance_per_frame(relevance[None])[0]
    summary.write_text(json.dumps({**info, "relevance_per_frame": curve.tolist()}, indent=2))
    written.append(summary)
    return written


def _explain_and_write(
    model: nn.Module,
    clip: Tensor,
    model_input: Tensor,
    method: str,
    target: int | None,
    classes: Sequence[str] | None,
    out: Path,
    name: str,
    extra: dict[str, Any],
) -> tuple[list[Path], dict[str, Any]]:
    pred, prob = predict(model, model_input[None])
    tgt = int(pred) if target is None else target
    explain = make_explainer(method, model)
    start = time.perf_counter()
    relevance = reduce_channels(explain(model_input[None], torch.tensor([tgt])))[0]
    seconds = time.perf_counter() - start

    def label(i: int) -> str:
        return classes[i] if classes and 0 <= i < len(classes) else str(i)

    info = {
        "method": method,
        "target": tgt,
        "target_label": label(tgt),
        "prediction": int(pred),
        "prediction_label": label(int(pred)),
        "probability": float(prob),
        "seconds": seconds,
        **extra,
    }
    written = _write_outputs(out, name, clip, relevance, info)
    return written, info


DEMO_METHODS = ("gradcam_tube", "selective_gradcam_tube", "deep_taylor")


def run_demo(out: Path, methods: Sequence[str] = DEMO_METHODS, seed: int = 0) -> list[Path]:
    """Explain one synthetic clip with the bundled demo model and write the results.

    For each method it writes the relevance tensor and a JSON summary, a browser-playable
    ``.webm`` (original | overlay) and a ``.png`` frame grid; it also splits deep Taylor
    relevance into spatial and temporal parts and logs everything for the TensorBoard
    plugin under ``out/tensorboard``.

    Args:
        out (Path): output folder (created).
        methods (sequence of str, optional): names from
            :data:`captum_video.explainers.EXPLAINERS`. Default: :data:`DEMO_METHODS`
        seed (int, optional): which synthetic clip. Default: 0

    Returns:
        list of Path: the files written.

    Example::

        >>> files = run_demo(Path("/tmp/captum-video-demo"))
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from captum_video.attr import DeepTaylor3D, SpatioTemporalSplit
    from captum_video.tensorboard import add_relevance_clip
    from captum_video.visualization import visualize_video_attr, write_video

    model = load_demo_model("motion")
    accuracy = demo_model_info("motion")["val_accuracy"]
    data = MovingShapes("motion", num_samples=1, seed=10_000 + seed)
    clip, label, _ = data[0]
    print(
        "model: bundled demo C3DSmall trained on MovingShapes('motion') "
        f"(held-out accuracy {accuracy:.3f})"
    )
    print(
        f"clip: synthetic MovingShapes('motion') clip {tuple(clip.shape)} (C, T, H, W), "
        f"true class {data.classes[label]!r}"
    )
    with torch.no_grad():
        logits = model(clip[None])[0]
    written: list[Path] = []
    with SummaryWriter(str(out / "tensorboard")) as writer:
        for method in methods:
            files, info = _explain_and_write(
                model,
                clip,
                clip,
                method,
                None,
                data.classes,
                out,
                f"demo_{method}",
                {"true_label": data.classes[label], "source": "MovingShapes('motion')"},
            )
            relevance = torch.load(files[0], weights_only=False)["relevance"]
            written += files
            written.append(
                write_video(
                    relevance,
                    out / f"demo_{method}.webm",
                    fps=8,
                    video=clip,
                    scale=4,
                    caption=f"{method} | predicted {info['prediction_label']!r}",
                    times=[t / 8 for t in range(clip.shape[1])],
                )
            )
            fig, _ = visualize_video_attr(
                relevance,
                clip,
                frames=8,
                use_pyplot=False,
                show_colorbar=True,
                title=f"{method}: target {info['target_label']!r}",
            )
            fig.savefig(out / f"demo_{method}.png", dpi=80)
            plt.close(fig)
            written.append(out / f"demo_{method}.png")
            add_relevance_clip(
                writer,
                f"demo/{method}",
                clip,
                relevance,
                target=info["target"],
                prediction=logits,
                method=method,
                class_names=data.classes,
            )
            print(
                f"{method}: prediction {info['prediction_label']!r} "
                f"(p={info['probability']:.3f}), explained target {info['target_label']!r} "
                f"in {info['seconds']:.2f}s"
            )
        split = SpatioTemporalSplit(DeepTaylor3D(model)).attribute(
            clip[None], target=int(logits.argmax())
        )
        add_relevance_clip(
            writer,
            "demo/deep_taylor_split",
            clip,
            split,
            target=int(logits.argmax()),
            prediction=logits,
            method="SpatioTemporalSplit(DeepTaylor3D)",
            class_names=data.classes,
        )
        # Rescaled to the joint total, the temporal part moves relevance: what it adds
        # (its positive part) is the share of the clip's relevance that is there for motion.
        moved = float(split.temporal.clamp(min=0).sum()) / max(
            float(split.joint.abs().sum()), 1e-12
        )
        print(
            f"deep Taylor spatio-temporal split: motion moves {moved:.0%} of the clip's "
            "relevance (the positive temporal part)"
        )
    written.append(out / "tensorboard")
    print(
        f"view in TensorBoard: tensorboard --logdir {out / 'tensorboard'}  (tab 'Relevance Video')"
    )
    return written
