"""``python -m captum_video.cli``: the ``captum-video`` command."""

from captum_video.cli import main

raise SystemExit(main())
