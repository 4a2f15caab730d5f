"""Explain a small MovingShapes set with the demo model; run directly or under torchrun.

Used by tests/test_batch.py: under ``torchrun --nproc_per_node 2`` (Gloo on the CPU) to check
that the merged output equals a single-process run, and with ``--sleep`` to be killed midway
and resumed. The method is registered under its registry name even when slowed down, so the
run's configuration is the same as an in-process run with ``["gradcam_tube"]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from captum_video.datasets import MovingShapes
from captum_video.explainers import make_explainer
from captum_video.models import load_demo_model
from captum_video.pipeline import explain_dataset

#: The data set and options the tests compare against (keep in sync with tests/test_batch.py).
NUM_CLIPS, SEED, SHARD_SIZE, BATCH_SIZE = 8, 77, 2, 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to wait per batch")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_demo_model("motion")
    explain = make_explainer("gradcam_tube", model)

    def slow(clips: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time.sleep(args.sleep)
        return explain(clips, target)

    explain_dataset(
        model,
        MovingShapes("motion", num_samples=NUM_CLIPS, seed=SEED),
        {"gradcam_tube": slow},
        args.out,
        batch_size=args.batch_size,
        shard_size=SHARD_SIZE,
        highlights=0,
        tensorboard=False,
        progress=False,
    )


if __name__ == "__main__":
    main()
