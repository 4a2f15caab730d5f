"""The "Relevance Video" TensorBoard plugin: backend routes and the loader.

Registered through the ``tensorboard_plugins`` entry point as
``captum_video = "captum_video_tb.plugin:CaptumVideoLoader"``. Imports only TensorBoard,
werkzeug (a TensorBoard dependency) and the standard library: a failing import here would take
the whole ``tensorboard`` command down, and torch is slow to import.

Reads go through ``context.data_provider`` only, so the plugin works with the default fast
(Rust) data server as well as with ``--load_fast=false``. Routes, all under
``/data/plugin/captum_video``:

* ``/index.js`` and ``/static/<file>``: the frontend (an ES module with ``render()``), served
  from a fixed list of vendored files, so no request path can reach outside ``static/``.
* ``/tags``: ``{run: {tag: {max_step, max_length, description}}}``.
* ``/steps?run=&tag=``: ``[{step, wall_time}]`` of the retained steps.
* ``/clip?run=&tag=&step=``: ``{step, wall_time, header, frames: {block: [blob_key, ...]}}``.
* ``/blob?key=``: one frame's bytes, with HTTP Range support (``make_conditional``).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from pathlib import Path
from typing import Any

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from captum_video_tb import metadata

_STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# read_blob_sequences needs a number; ingestion has already sampled, so take all it kept.
_READ_ALL = 1_000_000
# Blob keys: URL-safe base64 (of a JSON list for the multiplexer), a few hundred characters.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_MAX_KEY = 4096


class CaptumVideoPlugin(base_plugin.TBPlugin):
    r"""Backend of the "Relevance Video" tab: lists and serves relevance clips.

    Args:
        context (TBContext): TensorBoard's plugin context; only ``data_provider`` and
            ``sampling_hints`` are used.

    Example::

        >>> from tensorboard.plugins.base_plugin import TBContext
        >>> plugin = CaptumVideoPlugin(TBContext(data_provider=my_provider, logdir="runs"))
        >>> sorted(plugin.get_plugin_apps())[:2]
        ['/blob', '/clip']
    """

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._provider = context.data_provider
        hints = context.sampling_hints or {}
        self._downsample = int(hints.get(metadata.PLUGIN_NAME, 0)) or _READ_ALL
        # A fixed allow-list: the static route can only ever serve these vendored files.
        self._static = {p.name: p for p in _STATIC_DIR.iterdir() if p.is_file()}

    def get_plugin_apps(self) -> dict[str, Any]:
        """The WSGI apps of the plugin's routes (see the module docstring).

        Returns:
            dict: route to WSGI application.

        Example::

            >>> "/blob" in plugin.get_plugin_apps()
            True
        """
        # Request.application turns each request -> response method into a WSGI app.
        app = wrappers.Request.application
        return {
            "/index.js": app(self._serve_index),
            "/static/*": app(self._serve_static),
            "/tags": app(self._serve_tags),
            "/steps": app(self._serve_steps),
            "/clip": app(self._serve_clip),
            "/blob": app(self._serve_blob),
        }

    def is_active(self) -> bool:
        """Always False: the core enables the tab when the logdir holds our summaries.

        Returns:
            bool: ``False``.

        Example::

            >>> plugin.is_active()
            False
        """
        return False

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        """The iframe ES module and the tab's name.

        Returns:
            FrontendMetadata: ``es_module_path="/index.js"``, tab "Relevance Video".

        Example::

            >>> plugin.frontend_metadata().tab_name
            'Relevance Video'
        """
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Relevance Video")

    # -- static files -------------------------------------------------------------------------

    def _static_response(self, request: wrappers.Request, name: str) -> wrappers.Response:
        path = self._static.get(name)
        if path is None:
            raise errors.NotFoundError(f"no static file {name!r}")
        content_type = _STATIC_TYPES.get(path.suffix) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        return http_util.Respond(request, path.read_bytes(), content_type)

    def _serve_index(self, request: wrappers.Request) -> wrappers.Response:
        return self._static_response(request, "index.js")

    def _serve_static(self, request: wrappers.Request) -> wrappers.Response:
        # The route is a prefix match; the remainder must be one plain file name.
        marker = "/static/"
        path = request.path
        name = path[path.rfind(marker) + len(marker) :] if marker in path else ""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise errors.NotFoundError(f"no static file {name!r}")
        return self._static_response(request, name)

    # -- data ---------------------------------------------------------------------------------

    def _ctx(self, request: wrappers.Request) -> tuple[Any, str]:
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _serve_tags(self, request: wrappers.Request) -> wrappers.Response:
        ctx, eid = self._ctx(request)
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=eid, plugin_name=metadata.PLUGIN_NAME
        )
        result: dict[str, dict[str, Any]] = {}
        for run in sorted(listing):
            tags = {}
            for tag in sorted(listing[run]):
                series = listing[run][tag]
                tags[tag] = {
                    "max_step": series.max_step,
                    "max_length": series.max_length,
                    "description": series.description,
                }
            if tags:
                result[run] = tags
        return _json(request, result)

    def _read_series(self, request: wrappers.Request) -> list[Any]:
        run = request.args.get("run")
        tag = request.args.get("tag")
        if run is None or tag is None:
            raise errors.InvalidArgumentError("run and tag are required")
        ctx, eid = self._ctx(request)
        data = self._provider.read_blob_sequences(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        )
        series = data.get(run, {}).get(tag)
        if series is None:
            raise errors.NotFoundError(f"no relevance clips for run {run!r}, tag {tag!r}")
        return list(series)

    def _serve_steps(self, request: wrappers.Request) -> wrappers.Response:
        series = self._read_series(request)
        return _json(request, [{"step": d.step, "wall_time": d.wall_time} for d in series])

    def _serve_clip(self, request: wrappers.Request) -> wrappers.Response:
        step_arg = request.args.get("step")
        try:
            step = int(step_arg) if step_arg is not None else None
        except ValueError as exc:
            raise errors.InvalidArgumentError(f"step must be an integer, got {step_arg!r}") from exc
        series = self._read_series(request)
        if step is None:
            datum = series[-1] if series else None
        else:
            datum = next((d for d in series if d.step == step), None)
        if datum is None:
            raise errors.NotFoundError(f"no relevance clip at step {step_arg}")
        ctx, _ = self._ctx(request)
        keys = [ref.blob_key for ref in datum.values]
        if not keys:
            raise errors.NotFoundError(f"relevance clip at step {datum.step} is empty")
        try:
            header = metadata.decode_header(self._provider.read_blob(ctx, blob_key=keys[0]))
            frames = {
                name: [keys[i] for i in metadata.block_range(header, name)]
                for name in ["original", *header["parts"]]
            }
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise errors.InvalidArgumentError(
                f"step {datum.step} is not a readable relevance clip: {exc}"
            ) from exc
        return _json(
            request,
            {"step": datum.step, "wall_time": datum.wall_time, "header": header, "frames": frames},
        )

    def _serve_blob(self, request: wrappers.Request) -> wrappers.Response:
        key = request.args.get("key")
        if not key:
            raise errors.InvalidArgumentError("key is required")
        # Both data providers' keys are URL-safe base64; anything else is not one of theirs.
        if len(key) > _MAX_KEY or not _KEY_PATTERN.fullmatch(key):
            raise errors.InvalidArgumentError("key is not a blob key of this server")
        ctx, _ = self._ctx(request)
        try:
            data = self._provider.read_blob(ctx, blob_key=key)
        except errors.PublicError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
            # The multiplexer (--load_fast=false) decodes the key (base64, then JSON of six
            # fields) and looks its run, tag, step and index up without checking any of them.
            raise errors.InvalidArgumentError(
                f"key is not a blob key of this server ({type(exc).__name__})"
            ) from None
        if not isinstance(data, bytes):
            raise errors.InvalidArgumentError("key does not name one blob")
        response = wrappers.Response(data, mimetype=_sniff(data))
        response.headers["X-Content-Type-Options"] = "nosniff"
        # A key names fixed bytes for the server's lifetime, so caching by ETag is safe.
        response.set_etag(hashlib.sha1(data).hexdigest())
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response.make_conditional(request, accept_ranges=True, complete_length=len(data))


class CaptumVideoLoader(base_plugin.TBLoader):
    r"""Loader for the ``tensorboard_plugins`` entry point.

    ``fix_flags`` makes TensorBoard keep every logged step of our summaries (``0`` means
    "all"): blob sequences otherwise keep only 10 sampled steps, and the user picks a step.
    An explicit ``--samples_per_plugin captum_video=N`` still wins; use it to bound memory when
    many large clips are logged.

    Example::

        >>> loader = CaptumVideoLoader()
        >>> plugin = loader.load(context)
    """

    def fix_flags(self, flags: Any) -> None:
        """Default ``--samples_per_plugin captum_video=0`` (keep all steps).

        Args:
            flags (argparse.Namespace): TensorBoard's parsed flags (changed in place).

        Example::

            >>> CaptumVideoLoader().fix_flags(flags)
        """
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(metadata.PLUGIN_NAME, 0)

    def load(self, context: base_plugin.TBContext) -> CaptumVideoPlugin:
        """Build the plugin.

        Args:
            context (TBContext): TensorBoard's plugin context.

        Returns:
            CaptumVideoPlugin: the plugin instance.

        Example::

            >>> CaptumVideoLoader().load(context).plugin_name
            'captum_video'
        """
        return CaptumVideoPlugin(context)


def _json(request: wrappers.Request, value: Any) -> wrappers.Response:
    return http_util.Respond(request, json.dumps(value), "application/json")


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"{"):
        return "application/json"
    return "application/octet-stream"
