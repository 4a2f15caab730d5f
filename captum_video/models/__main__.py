"""``python -m captum_video.models --train --variant V``: rebuild a bundled demo checkpoint."""

from __future__ import annotations

import argparse

from captum_video.models.demo import ARCHITECTURES, DEMO_VARIANTS
from captum_video.models.training import train_demo_model


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and train the requested demo model; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m captum_video.models", description="Rebuild the bundled demo checkpoints."
    )
    parser.add_argument("--train", action="store_true", help="train and save a demo model")
    parser.add_argument("--variant", default="motion", choices=DEMO_VARIANTS)
    parser.add_argument("--arch", default="c3d_small", choices=sorted(ARCHITECTURES))
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: 12 (video_transformer_small: 4)"
    )
    parser.add_argument("--num-train", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output path (default: the bundled file)")
    args = parser.parse_args(argv)
    if not args.train:
        parser.print_help()
        return 0
    train_demo_model(
        args.variant,
        args.arch,
        num_train=args.num_train,
        epochs=args.epochs,
        seed=args.seed,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
