"""Plugin name, summary metadata and the blob layout shared by the writer and the plugin.

This module is the one contract between the torch-side writer
(:mod:`captum_video.tensorboard`) and the TensorBoard plugin (:mod:`captum_video_tb.plugin`).
It imports only the standard library and TensorBoard's protos, so the plugin stays light.

One logged relevance clip is one datum of a *blob sequence* (one per run, tag and step), so
the original frames, the relevance frames, the labels and the curve are always sampled
together by TensorBoard's ingestion (different data classes are sampled differently)::

    [header_json,
     original_0 .. original_{T-1},          # PNG or JPEG frames of the clip
     <part 0>_0 .. <part 0>_{T-1},          # 8-bit greyscale PNG relevance frames,
     <part 1>_0 .. ...]                     # one block per part ("joint", "spatial", ...)

The header (UTF-8 JSON, ``version`` :data:`HEADER_VERSION`) says where each block starts
(``blocks``), how to turn relevance bytes back into values (``encoding``, ``scale``), and
carries labels, fps, sizes and the per-frame relevance curves. See :func:`decode_relevance`.
"""

from __future__ import annotations

import json
from typing import Any

from tensorboard.compat.proto import summary_pb2

#: The TensorBoard plugin name (route prefix ``/data/plugin/captum_video/``).
PLUGIN_NAME = "captum_video"
#: Version of ``plugin_data.content`` (static, per time series).
CONTENT_VERSION = 1
#: Version of the per-step JSON header (blob 0).
HEADER_VERSION = 1
#: Kind string written into the content and the header.
KIND = "relevance_clip"
#: Relevance byte encodings: ``unsigned`` maps ``[0, scale]`` to ``0..255``; ``signed`` maps
#: ``[-scale, scale]`` to ``0..255`` with zero at 127.5.
ENCODINGS = ("unsigned", "signed")


def create_summary_metadata(description: str = "") -> summary_pb2.SummaryMetadata:
    """Summary metadata for one relevance-clip blob sequence.

    Only the first event's metadata of a time series is kept by TensorBoard, so the content
    holds static facts only (version and kind); per-step facts live in the header blob.

    Args:
        description (str, optional): text shown as the tag's description. Default: ``""``

    Returns:
        SummaryMetadata: with ``plugin_data.plugin_name`` :data:`PLUGIN_NAME` and the
        blob-sequence data class (without it the fast data server drops the series).

    Example::

        >>> md = create_summary_metadata("IG on clip 3")
        >>> md.plugin_data.plugin_name
        'captum_video'
    """
    content = json.dumps({"version": CONTENT_VERSION, "kind": KIND}).encode("utf-8")
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content
        ),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


def parse_plugin_content(content: bytes) -> dict[str, Any]:
    """Parse ``plugin_data.content`` written by :func:`create_summary_metadata`.

    Args:
        content (bytes): the raw content (empty bytes are accepted and give version 0).

    Returns:
        dict: at least ``{"version": int, "kind": str}``.

    Raises:
        ValueError: the content is not a JSON object.

    Example::

        >>> parse_plugin_content(create_summary_metadata().plugin_data.content)["kind"]
        'relevance_clip'
    """
    if not content:
        return {"version": 0, "kind": KIND}
    try:
        parsed = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"captum_video plugin content is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"captum_video plugin content must be a JSON object, got {parsed!r}")
    return parsed


def encode_header(header: dict[str, Any]) -> bytes:
    """Serialise a step header to compact UTF-8 JSON (blob 0 of the sequence).

    Args:
        header (dict): JSON-serialisable header; ``version`` and ``kind`` are filled in.

    Returns:
        bytes: the JSON document.

    Example::

        >>> decode_header(encode_header({"num_frames": 2}))["num_frames"]
        2
    """
    full = {"version": HEADER_VERSION, "kind": KIND, **header}
    return json.dumps(full, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_header(data: bytes) -> dict[str, Any]:
    """Parse blob 0 of a relevance-clip sequence.

    Args:
        data (bytes): the header blob.

    Returns:
        dict: the header.

    Raises:
        ValueError: not a JSON object of kind :data:`KIND`, or a newer header version.

    Example::

        >>> decode_header(encode_header({}))["version"] == HEADER_VERSION
        True
    """
    try:
        header = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"relevance clip header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("kind") != KIND:
        raise ValueError("blob 0 is not a captum_video relevance clip header")
    if int(header.get("version", 0)) > HEADER_VERSION:
        raise ValueError(
            f"relevance clip header version {header['version']} is newer than this plugin "
            f"understands ({HEADER_VERSION}); upgrade captum-video"
        )
    return header


def block_range(header: dict[str, Any], name: str) -> range:
    """Indices in the blob sequence of block ``name`` (``"original"`` or a part name).

    Args:
        header (dict): a decoded header.
        name (str): ``"original"`` or one of ``header["parts"]``.

    Returns:
        range: the blob indices of that block's frames.

    Raises:
        KeyError: no such block.

    Example::

        >>> list(block_range({"blocks": {"original": [1, 3]}}, "original"))
        [1, 2, 3]
    """
    start, count = header["blocks"][name]
    return range(int(start), int(start) + int(count))


def decode_relevance(byte_value: int, encoding: str, scale: float) -> float:
    """Turn one stored relevance byte back into a relevance value (for tests and readers).

    Args:
        byte_value (int): pixel value ``0..255`` of a relevance frame.
        encoding (str): ``"unsigned"`` or ``"signed"`` (see :data:`ENCODINGS`).
        scale (float): the header's ``scale``.

    Returns:
        float: the relevance value, exact up to 8-bit quantisation.

    Example::

        >>> decode_relevance(255, "signed", 2.0)
        2.0
    """
    if encoding == "unsigned":
        return byte_value / 255.0 * scale
    if encoding == "signed":
        return (byte_value - 127.5) / 127.5 * scale
    raise ValueError(f"unknown relevance encoding {encoding!r}; expected one of {ENCODINGS}")
