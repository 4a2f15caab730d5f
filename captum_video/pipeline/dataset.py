r"""Explain a whole data set: batched, sharded, resumable, on one device or many.

The pipeline has three layers, each importing only those below it: running
(:mod:`~captum_video.pipeline.run`: batches and per-clip metrics), storing
(:mod:`~captum_video.pipeline.store`: shards and their writer thread) and publishing
(:mod:`~captum_video.pipeline.publish`: merge, exported clips, TensorBoard, report); this
module runs them in order.

:func:`explain_dataset` streams clips through one or more attribution methods in batches on the
model's device, computes per-clip metrics, and writes everything to *shards* in ``out_dir``::

    out_dir/
      .lock                       held while a run writes here (pid, host, start time)
      run.json                    the configuration and its run key (a resumed run must match)
      shards/shard-00000.npz      attributions, (n, 1, T, H, W) per method, compressed
      shards/shard-00000.json     per-clip metrics, failed clips, a manifest (shard, clips,
                                  run key, sha256 of the .npz, run id, rank, time)
      summary.json                data-set summary merged from all shards (rank 0)
      failures.json               the clips that could not be loaded or explained
      clips.csv                   one row of metrics per clip
      report.html                 self-contained report (:mod:`captum_video.pipeline.report`)
      tensorboard/                add_relevance_clip logs of a few highlighted clips
      clips/                      the highlighted clips as videos (original | overlay)

Shard ``k`` holds the clips ``k * shard_size .. (k + 1) * shard_size - 1``; the format and its
atomic writes are :mod:`captum_video.pipeline.store`, the summaries
:mod:`captum_video.pipeline.summary`. A
rerun with the same ``out_dir`` skips done shards, so an interrupted run resumes where it
stopped and only the clips of unfinished shards (and the clips that failed) are computed
again. What "the same run" means is :mod:`captum_video.pipeline.identity` (weights, layer,
methods and their arguments, data, options, version); what makes a done shard trustworthy is
:mod:`captum_video.pipeline.verify`; one process at a time is :mod:`captum_video.pipeline.lock`;
what happens to a clip that cannot be read or explained is
:mod:`captum_video.pipeline.failures`. Under ``torchrun`` every rank takes its own shards
(``DistributedSampler`` over the shards still to do) and rank 0 merges the summary after a
barrier.

Per clip: prediction, its probability, the explained target and its probability, the top-5,
the label (when the data set gives one), the temporal sensitivity (probability drop when the
clip is frozen or its frames shuffled, computed once per clip), and per method the per-frame
relevance curve (share of absolute relevance in each frame), the spatial bias through
selective relevance, and the relevance mass inside the ground-truth mask (when the data set
gives one, as :class:`~captum_video.datasets.MovingShapes` does).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from captum_video._distributed import broadcast, init_distributed, my_shards, raise_anywhere
from captum_video._model_state import module_device
from captum_video._scalars import validate_fps, validate_positive_int
from captum_video._targets import validate_target
from captum_video.pipeline._arguments import (
    layer_identity,
    resolve_methods,
    resolve_preprocess,
    unpack_data,
)
from captum_video.pipeline.identity import (
    data_fingerprint,
    model_sha256,
    package_version,
    plain,
    run_key,
)
from captum_video.pipeline.lock import out_dir_lock
from captum_video.pipeline.publish import merge
from captum_video.pipeline.run import TEMPORAL_OPS, Explain, run_shards
from captum_video.pipeline.store import FORMAT_VERSION, load_attribution, load_records
from captum_video.pipeline.verify import ResumePlan, prepare_out_dir

__all__ = ["explain_dataset", "DatasetExplanation", "TEMPORAL_OPS"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class DatasetExplanation:
    """What :func:`explain_dataset` did and where it put it.

    Attributes:
        out_dir (Path): the output folder.
        summary (dict): the merged data-set summary (also in ``summary.json``).
        computed_clips (int): clips this process tried in this call (also those that failed).
        skipped_clips (int): clips of shards that were already done and did not fail there
            (all ranks); they were not computed again.
        report (Path or None): the HTML report, if written.
        files (list of Path): the merged files rank 0 wrote (summary, table, report, videos).
        failures (list of dict): the clips of the run that failed (``failures.json``; see
            :mod:`captum_video.pipeline.failures`).
    """

    out_dir: Path
    summary: dict[str, Any]
    computed_clips: int
    skipped_clips: int
    report: Path | None = None
    files: list[Path] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """Per-clip metrics of every clip, ordered by index (see :func:`load_records`)."""
        return load_records(self.out_dir)

    def attribution(self, index: int, method: str) -> Tensor:
        """The stored ``(1, T, H, W)`` attribution of one clip (see :func:`load_attribution`)."""
        return load_attribution(self.out_dir, index, method)


def explain_dataset(
    model: nn.Module,
    dataset_or_loader: Dataset | DataLoader,
    methods: str | Sequence[str] | Mapping[str, Explain | Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    batch_size: int | None = None,
    shard_size: int = 64,
    num_workers: int | None = None,
    layer: nn.Module | None = None,
    target: str | int = "prediction",
    preprocess: str | Callable[[Tensor], Tensor] | None = None,
    float16: bool = False,
    temporal_ops: Sequence[str] = TEMPORAL_OPS,
    selective_sigma: float | None = 3.0,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    highlights: int = 4,
    clip_format: str = ".webm",
    fps: float = 8.0,
    tensorboard: bool = True,
    report: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    fingerprint: str | None = None,
    max_memory: int | str | None = None,
) -> DatasetExplanation:
    r"""Explain every clip of a data set with one or more methods and write shards + a report.

    Clips go to the model's device in batches of ``batch_size``; only one batch and one
    unfinished shard are in memory at a time. Rerunning with the same ``out_dir`` resumes: the
    shards already written are skipped (their clips are not recomputed). The same script runs
    unchanged under ``torchrun --nproc_per_node N``: if ``WORLD_SIZE > 1`` and no process
    group exists one is created from the environment (NCCL when the model is on a GPU, Gloo on
    the CPU; place each rank's model on ``cuda:LOCAL_RANK``), the shards still to do are split
    over the ranks with a ``DistributedSampler``, and rank 0 merges the results after a
    barrier. A process group this function created is destroyed before it returns.

    The model is put in eval mode for the run and its modes restored afterwards; its
    parameters, hooks and ``requires_grad`` flags are left as they were.

    A clip that cannot be loaded (the data set's ``__getitem__`` raises, e.g. an unreadable
    or too short video) or explained (the model or a method raises on it) does not stop the
    run: it is recorded with its stage and error in ``failures.json``, ``summary.json`` and
    the report, and a rerun tries only those clips again (with the shards not done). Mistakes
    that hit every clip (unknown methods, a model returning scores of the wrong shape, a
    method returning maps of the wrong shape, a target out of range, a batch whose every
    clip fails before any clip of the run succeeded) raise at once.

    Only one process may write to ``out_dir`` at a time (``out_dir/.lock``; under torchrun
    rank 0 holds it for all ranks); the lock of a killed run is taken over with a warning.

    Args:
        model (nn.Module): the video classifier, already on its device, returning ``(N, K)``.
        dataset_or_loader (Dataset or DataLoader): a map-style data set whose items are a clip
            ``(C, T, H, W)`` in ``[0, 1]``, a tuple ``(clip, label)`` or ``(clip, label, mask)``
            (mask ``(T, H, W)``, e.g. :class:`~captum_video.datasets.MovingShapes`), or a dict
            with keys ``"video"``/``"clip"``, ``"label"``, ``"mask"``. A DataLoader contributes
            its data set, batch size and worker count; its sampler is not used (resuming and
            sharding need to know each clip's index). A data set with a ``clip_name(index)``
            method names its clips in the report (e.g.
            :class:`~captum_video.video_folder.VideoFolder`).
        methods (str, sequence of str or mapping): names from
            :data:`captum_video.explainers.EXPLAINERS`, or a mapping whose values are
            ``explain(clips, target)`` callables returning ``(N, C, T, H, W)`` relevance in
            the clips' resolution (channels are summed) or, for a registry name, a mapping
            of ``attribute`` keywords that replace the entry's (``{"integrated_gradients":
            {"n_steps": 32}}``). Names must match ``[A-Za-z0-9_-]+``.
        out_dir (str or PathLike): the output folder (created).
        batch_size (int, optional): clips per batch; default the loader's, else 8.
        shard_size (int, optional): clips per shard, the unit of resuming and of
            distribution. Default: 64
        num_workers (int, optional): DataLoader workers; default the loader's, else 0.
        layer (nn.Module, optional): the layer of layer methods (default
            :func:`captum_video.registry.default_layer`). Default: None
        target (str or int, optional): ``"prediction"`` (explain the predicted class),
            ``"label"`` (the data set's label) or a class index. Default: ``"prediction"``
        preprocess (str or callable, optional): applied to each batch on the device before
            the model sees it, e.g. a normalisation preset name (``"kinetics"``, see
            :data:`captum_video.registry.NORMALIZATION_PRESETS`) or ``x -> x'``; the stored and
            visualised clips stay in ``[0, 1]``. Default: None
        float16 (bool, optional): store attributions as float16 (half the disk; values beyond
            the float16 range are clipped with a warning). Default: False
        temporal_ops (sequence of str, optional): temporal perturbations of the temporal
            sensitivity, out of ``"freeze"`` and ``"shuffle"``; ``()`` skips it. Shuffling
            uses one permutation per clip seeded by ``(seed, index)``, so results do not
            depend on batching or ranks. Default: ``("freeze", "shuffle")``
        selective_sigma (float, optional): ``sigma`` of the selective relevance behind the
            spatial bias; None skips spatial bias. Default: 3.0
        class_names (sequence of str, optional): labels of the classes; default the data
            set's ``classes`` attribute. Default: None
        seed (int, optional): seed of the shuffles. Default: 0
        highlights (int, optional): clips shown in the report, TensorBoard and as videos
            (misclassified first, then the most confident clip of each class). Default: 4
        clip_format (str, optional): ``".webm"`` or ``".gif"`` for the highlighted clips
            (WebM falls back to GIF where OpenCV cannot encode it). Default: ``".webm"``
        fps (float, optional): frame rate of exported clips and TensorBoard. Default: 8.0
        tensorboard (bool, optional): write TensorBoard logs to ``out_dir/tensorboard``.
            Default: True
        report (bool, optional): write ``out_dir/report.html``. Default: True
        progress (bool, optional): show a tqdm bar with clips/s. Default: True
        overwrite (bool, optional): delete earlier results in ``out_dir`` instead of
            resuming; without it, results of a *different* configuration are an error
            naming what changed. The configuration (:mod:`captum_video.pipeline.identity`)
            covers the options above, the model's class and weights (sha256 of its state
            dict), the layer's name in the model, every method's registry name and
            ``attribute`` keywords (a callable's qualified name), the data (a data set's
            ``fingerprint()``, e.g. a VideoFolder's files, sizes and modification times;
            else its class, plain attributes and tensors, e.g. a MovingShapes' seed or a
            TensorDataset's tensors) and ``captum_video.__version__``. Default: False
        fingerprint (str, optional): anything else that identifies the run and is not seen
            otherwise, e.g. the version of a custom method's code; stored with the
            configuration, so resuming with another fingerprint is an error. Default: None
        max_memory (int or str, optional): a memory budget for the registry methods, passed
            to :func:`~captum_video.explainers.make_explainer` (they split their work into
            chunks that fit). It does not change results, so it is not part of the run's
            identity. Default: None (no limit)

    Returns:
        DatasetExplanation: paths, the merged summary and how many clips were computed.

    Raises:
        TypeError: a model that is not an ``nn.Module``, an iterable-style data set, or a
            method that is neither a name nor a callable.
        ValueError: bad sizes, unknown method or target, an item that is not a video, a
            relevance of the wrong shape, every clip failing, or ``out_dir`` holding another
            configuration (:class:`~captum_video.pipeline.identity.ConfigurationChanged`).
        OutDirInUse: another live process is writing to ``out_dir``
            (:class:`~captum_video.pipeline.lock.OutDirInUse`, a ``RuntimeError``).

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> from captum_video.models import load_demo_model
        >>> run = explain_dataset(
        ...     load_demo_model("motion"), MovingShapes("motion", num_samples=32),
        ...     ["gradcam_tube"], "runs/moving-shapes", batch_size=16)
        >>> run.summary["overall"]["temporal_sensitivity"]["freeze"] > 0.5  # a motion model
        True
        >>> # the same script under: torchrun --nproc_per_node 2 explain.py
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    dataset, batch_size, num_workers = unpack_data(dataset_or_loader, batch_size, num_workers)
    validate_positive_int(shard_size, "shard_size")
    validate_positive_int(highlights, "highlights", minimum=0)
    validate_fps(fps)
    if isinstance(target, str):
        if target not in ("prediction", "label"):
            raise ValueError(
                f"target must be 'prediction', 'label' or a class index, got {target!r}"
            )
    else:
        validate_target(target)
    if selective_sigma is not None and (
        isinstance(selective_sigma, bool)
        or not isinstance(selective_sigma, (int, float))
        or not math.isfinite(selective_sigma)
        or selective_sigma < 0
    ):
        raise ValueError(
            f"selective_sigma must be None or a finite number >= 0, got {selective_sigma!r}"
        )
    unknown_ops = set(temporal_ops) - set(TEMPORAL_OPS)
    if unknown_ops:
        raise ValueError(f"temporal_ops may hold {TEMPORAL_OPS}, got {sorted(unknown_ops)}")
    if clip_format not in (".webm", ".gif"):
        raise ValueError(f"clip_format must be '.webm' or '.gif', got {clip_format!r}")
    explainers, identities = resolve_methods(methods, model, layer, max_memory)
    prepare = resolve_preprocess(preprocess)
    device = module_device(model)
    out = Path(out_dir).resolve()
    names = class_names if class_names is not None else getattr(dataset, "classes", None)
    config = {
        "format": FORMAT_VERSION,
        "version": package_version(),
        "num_clips": len(dataset),  # type: ignore[arg-type]
        "shard_size": shard_size,
        "methods": list(explainers),
        "method_args": identities,
        "layer": layer_identity(model, layer, identities),
        "target": target,
        "float16": bool(float16),
        "temporal_ops": list(temporal_ops),
        "selective_sigma": selective_sigma,
        "seed": seed,
        "preprocess": preprocess
        if isinstance(preprocess, str) or preprocess is None
        else plain(preprocess),
        "model": type(model).__name__,
        "model_sha256": model_sha256(model),
        "class_names": list(names) if names is not None else None,
        "data": data_fingerprint(dataset),
        "fingerprint": fingerprint,
    }

    rank, world, created = init_distributed(device)
    lock = ExitStack()  # rank 0 holds out_dir/.lock for every rank until the merge is done
    try:
        plan = _prepare_out_dir(out, config, overwrite, rank, world, lock)
        mine = my_shards(sorted(plan.todo), rank, world)
        manifest = {
            "run_key": run_key(config),
            "run_id": broadcast(uuid.uuid4().hex, world),
            "rank": rank,
            "world_size": world,
            "device": str(device),
        }
        computed = 0
        try:
            with _eval_mode(model):
                computed = run_shards(
                    model,
                    dataset,
                    explainers,
                    prepare,
                    config,
                    {k: plan.todo[k] for k in mine},
                    out,
                    device,
                    batch_size,
                    num_workers,
                    manifest,
                    progress,
                    succeeded_before=plan.skipped,
                )
        except Exception as err:
            raise_anywhere(err, rank, world)
        raise_anywhere(None, rank, world)  # also the barrier before the merge
        files: list[Path] = []
        report_path = None
        try:
            if rank == 0:
                files, report_path = merge(
                    out, config, dataset, highlights, clip_format, fps, tensorboard, report
                )
        except Exception as err:
            raise_anywhere(err, rank, world)
        raise_anywhere(None, rank, world)
        summary = json.loads((out / "summary.json").read_text())
    finally:
        lock.close()
        if created:
            dist.destroy_process_group()
    return DatasetExplanation(
        out, summary, computed, plan.skipped, report_path, files, summary.get("failures", [])
    )


# --------------------------------------------------------------------------- distribution


def _prepare_out_dir(
    out: Path, config: dict[str, Any], overwrite: bool, rank: int, world: int, lock: ExitStack
) -> ResumePlan:
    """Rank 0 locks and checks ``out`` and lists the clips to do; every rank gets the plan."""
    answer: Any = None
    if rank == 0:
        try:
            lock.enter_context(out_dir_lock(out))
            answer = prepare_out_dir(out, config, overwrite)
        except Exception as err:  # every rank must leave the collective call
            answer = err
    answer = broadcast(answer, world)
    if isinstance(answer, Exception):
        raise answer
    return answer


# --------------------------------------------------------------------------- the work


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block; every module's own mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
