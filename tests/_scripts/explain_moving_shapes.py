"""Explain a small MovingShapes set with the demo model; run directly or under torchrun.

Used by tests/test_batch.py: under ``torchrun --nproc_per_node 2`` (Gloo on the CPU) to check
that the merged output equals a single-process run, and with ``--sleep`` to be killed midway
and resumed (tests/test_pipeline_faults.py). The method is the registry's ``gradcam_tube``
and the slowing down is a forward pre-hook on the model (hooks are not part of its weights),
so the run's configuration, and its run key, are those of an in-process run with
``["gradcam_tube"]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from captum_video.datasets import MovingShapes
from captum_video.models import load_demo_model
from captum_video.pipeline import explain_dataset

#: The data set and options the tests compare against (keep in sync with tests/test_batch.py).
NUM_CLIPS, SEED, SHARD_SIZE, BATCH_SIZE = 8, 77, 2, 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument(
        "--sleep",
        type=float,
        default=0.0,
        help="seconds to wait per model call (4 calls per batch: scores, freeze, shuffle, "
        "Grad-CAM)",
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_demo_model("motion")
    if args.sleep > 0:
        model.register_forward_pre_hook(lambda module, inputs: time.sleep(args.sleep))

    explain_dataset(
        model,
        MovingShapes("motion", num_samples=NUM_CLIPS, seed=SEED),
        ["gradcam_tube"],
        args.out,
        batch_size=args.batch_size,
        shard_size=SHARD_SIZE,
        highlights=0,
        tensorboard=False,
        progress=False,
    )


if __name__ == "__main__":
    main()
