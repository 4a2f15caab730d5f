"""add_relevance_clip: what lands in the event file, byte for byte, and its input checks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import summary_pb2, types_pb2
from torch.utils.tensorboard import SummaryWriter

from captum_video.tensorboard import add_relevance_clip
from captum_video_tb import metadata

T, H, W = 5, 8, 12


def _clip() -> torch.Tensor:
    # Exact multiples of 1/255 so the stored uint8 frames can be compared exactly.
    return torch.randint(0, 256, (3, T, H, W)).float() / 255


def _events(logdir: Path) -> list:
    files = sorted(logdir.glob("events.out.tfevents.*"))
    assert len(files) == 1
    return [e for e in EventFileLoader(str(files[0])).Load() if e.HasField("summary")]


def _blobs(event) -> tuple[summary_pb2.Summary.Value, list[bytes]]:
    (value,) = event.summary.value
    return value, list(value.tensor.string_val)


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def _write(tmp_path: Path, *args, **kwargs) -> tuple[dict, list[bytes], summary_pb2.Summary.Value]:
    writer = SummaryWriter(str(tmp_path))
    header = add_relevance_clip(writer, *args, **kwargs)
    writer.close()
    (event,) = _events(tmp_path)
    value, blobs = _blobs(event)
    return header, blobs, value


def test_blob_sequence_layout_frames_and_relevance_round_trip(tmp_path: Path) -> None:
    video = _clip()
    attr = torch.randn(3, T, H, W)
    spatial, temporal = 0.75 * attr, torch.rand(1, T, H, W) * 0.1
    video_before, attr_before = video.clone(), attr.clone()
    header, blobs, value = _write(
        tmp_path,
        "relevance/clip0",
        video,
        attr,
        global_step=7,
        fps=12,
        extra={"spatial": spatial, "temporal": temporal, "note": {"seed": 3}},
    )
    # The caller's tensors are untouched.
    assert torch.equal(video, video_before) and torch.equal(attr, attr_before)

    # Metadata: our plugin, a blob sequence (the fast loader drops unknown classes), rank 1.
    assert value.tag == "relevance/clip0"
    assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    content = metadata.parse_plugin_content(value.metadata.plugin_data.content)
    assert content == {"version": metadata.CONTENT_VERSION, "kind": metadata.KIND}
    assert value.tensor.dtype == types_pb2.DT_STRING
    assert [d.size for d in value.tensor.tensor_shape.dim] == [1 + 4 * T]
    assert len(blobs) == 1 + 4 * T

    stored = metadata.decode_header(blobs[0])
    assert {k: stored[k] for k in header} == json.loads(json.dumps(header))
    assert stored["step"] == 7 and stored["fps"] == 12.0
    assert (stored["num_frames"], stored["height"], stored["width"]) == (T, H, W)
    assert stored["parts"] == ["joint", "spatial", "temporal"]
    assert stored["info"] == {"note": {"seed": 3}}

    # Original frames are lossless.
    frames = np.stack([_decode(blobs[i]) for i in metadata.block_range(stored, "original")])
    expected = (video.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(frames, expected)

    # Relevance: channel sum, one shared scale, 8-bit quantisation error at most half a step.
    maps = {"joint": attr.sum(0), "spatial": spatial.sum(0), "temporal": temporal.sum(0)}
    scale = max(float(m.abs().max()) for m in maps.values())
    assert stored["scale"] == pytest.approx(scale)
    assert stored["encoding"] == "signed"
    for name, expected_map in maps.items():
        codes = np.stack([_decode(blobs[i]) for i in metadata.block_range(stored, name)])
        assert codes.dtype == np.uint8 and codes.shape == (T, H, W)
        decoded = np.vectorize(lambda b: metadata.decode_relevance(b, "signed", scale))(codes)
        np.testing.assert_allclose(decoded, expected_map.numpy(), atol=scale / 255 + 1e-6)
        # Curves are computed before quantisation: exact per-frame sums.
        np.testing.assert_allclose(
            stored["curves"][name]["sum"], expected_map.sum((1, 2)).numpy(), rtol=1e-5
        )
        np.testing.assert_allclose(
            stored["curves"][name]["abs_sum"], expected_map.abs().sum((1, 2)).numpy(), rtol=1e-5
        )
        assert stored["part_max_abs"][name] == pytest.approx(float(expected_map.abs().max()))


def test_unsigned_encoding_zero_relevance_and_step_default(tmp_path: Path) -> None:
    attr = torch.zeros(T, H, W)
    attr[2, 1:3, 4:6] = 3.0
    header, blobs, _ = _write(tmp_path, "t", _clip(), attr)
    assert header["encoding"] == "unsigned" and header["scale"] == 3.0 and header["step"] == 0
    codes = np.stack([_decode(blobs[i]) for i in metadata.block_range(header, "joint")])
    assert codes.max() == 255 and codes[2, 1, 4] == 255 and codes.sum() == 255 * 4

    sub = tmp_path / "zeros"
    header, blobs, _ = _write(sub, "t", _clip(), torch.zeros(T, H, W), global_step=3)
    assert header["scale"] == 1.0 and header["curves"]["joint"]["sum"] == [0.0] * T
    assert all(_decode(blobs[i]).max() == 0 for i in metadata.block_range(header, "joint"))


def test_uint8_refused_batched_grey_and_normalised_videos(tmp_path: Path) -> None:
    video_u8 = torch.randint(0, 256, (1, 1, T, H, W), dtype=torch.uint8)
    # The package's one uint8 policy: refused, with the fix (as methods and metrics do).
    with pytest.raises(TypeError, match=r"video must be a floating-point .*float\(\) / 255"):
        _write(tmp_path / "u8", "t", video_u8, torch.rand(1, 1, T, H, W))
    header, blobs, _ = _write(
        tmp_path / "a", "t", video_u8.float() / 255, torch.rand(1, 1, T, H, W)
    )
    assert header["channels"] == 1 and not header["video_rescaled"]
    frames = np.stack([_decode(blobs[i]) for i in metadata.block_range(header, "original")])
    np.testing.assert_array_equal(frames, video_u8[0, 0].numpy())

    normalised = (torch.rand(3, T, H, W) - 0.45) / 0.225  # ImageNet-style normalised clip
    header, blobs, _ = _write(tmp_path / "b", "t", normalised, torch.rand(3, T, H, W))
    assert header["video_rescaled"]
    frames = np.stack([_decode(blobs[i]) for i in metadata.block_range(header, "original")])
    assert frames.min() == 0 and frames.max() == 255


def test_layer_map_is_upsampled_to_the_clip(tmp_path: Path) -> None:
    layer_map = torch.rand(1, 2, 2, 4, 6)  # (1, K, T', H', W'), e.g. a Grad-CAM layer map
    header, blobs, _ = _write(tmp_path, "t", _clip(), layer_map)
    reference = torch.nn.functional.interpolate(
        layer_map.sum(1, keepdim=True).double(), size=(T, H, W), mode="trilinear"
    )[0, 0]
    np.testing.assert_allclose(header["curves"]["joint"]["sum"], reference.sum((1, 2)), rtol=1e-6)
    codes = np.stack([_decode(blobs[i]) for i in metadata.block_range(header, "joint")])
    np.testing.assert_allclose(codes / 255 * header["scale"], reference.numpy(), atol=0.01)


def test_labels_prediction_and_method(tmp_path: Path, demo_model: torch.nn.Module) -> None:
    names = ["right", "left", "down", "up"]
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.0]])
    method = IntegratedGradients(demo_model)
    header, _, _ = _write(
        tmp_path / "a",
        "t",
        _clip(),
        torch.rand(3, T, H, W),
        target=torch.tensor(1),
        prediction=logits,
        method=method,
        class_names=names,
    )
    assert header["method"] == "IntegratedGradients"
    assert header["target"] == {"index": 1, "label": "left"}
    assert header["prediction"]["index"] == 1 and header["prediction"]["score"] == 3.0
    assert [t["label"] for t in header["prediction"]["top"]] == ["left", "up", "right", "down"]
    assert header["correct"] is True

    header, _, _ = _write(
        tmp_path / "b", "t", _clip(), torch.rand(3, T, H, W), target=2, prediction=0, method="X"
    )
    assert header["target"] == {"index": 2, "label": None} and header["correct"] is False
    header, _, _ = _write(tmp_path / "c", "t", _clip(), torch.rand(3, T, H, W), target="jump")
    assert header["target"] == {"index": None, "label": "jump"} and header["correct"] is None


def test_jpeg_frames_and_several_steps_in_one_series(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path))
    # A smooth clip: JPEG is meant for natural images, not for noise.
    ramp = torch.linspace(0, 1, W).expand(T, H, W)
    video = torch.stack([ramp, ramp.flip(-1), torch.full_like(ramp, 0.5)])
    for step in range(3):
        add_relevance_clip(writer, "t", video, torch.rand(3, T, H, W), step, frame_format="jpeg")
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    events = [e for e in _events(tmp_path) if e.summary.value[0].tag == "t"]
    assert [e.step for e in events] == [0, 1, 2]
    _, blobs = _blobs(events[-1])
    header = metadata.decode_header(blobs[0])
    assert header["frame_format"] == "jpeg" and blobs[1][:3] == b"\xff\xd8\xff"
    first = _decode(blobs[1]).astype(float)
    assert first.shape == (H, W, 3)
    # JPEG is lossy, but must still be the same picture.
    assert np.abs(first - video[:, 0].permute(1, 2, 0).numpy() * 255).mean() < 6


@pytest.mark.parametrize(
    "video, attr, extra, kwargs, error, match",
    [
        (torch.rand(2, 3, T, H, W), torch.rand(2, 3, T, H, W), None, {}, ValueError, "one"),
        (torch.rand(4, T, H, W), torch.rand(4, T, H, W), None, {}, ValueError, "channels"),
        (torch.rand(3, H, W), torch.rand(3, H, W), None, {}, ValueError, "4-D"),
        ([0.0], torch.rand(3, T, H, W), None, {}, TypeError, "torch.Tensor"),
        (
            torch.rand(3, T, H, W),
            torch.full((3, T, H, W), float("nan")),
            None,
            {},
            ValueError,
            "NaN",
        ),
        (torch.rand(3, T, H, W), torch.rand(3, T + 2, H, W), None, {}, ValueError, "frames"),
        (torch.rand(3, T, H, W), torch.rand(H, W), None, {}, ValueError, "attribution must"),
        (
            torch.rand(3, T, H, W),
            torch.ones(3, T, H, W, dtype=torch.long),
            None,
            {},
            TypeError,
            "floating",
        ),
        (
            torch.rand(3, T, H, W),
            torch.rand(3, T, H, W),
            {"a b": torch.rand(T, H, W)},
            {},
            ValueError,
            "part names",
        ),
        (
            torch.rand(3, T, H, W),
            torch.rand(3, T, H, W),
            {"joint": torch.rand(T, H, W)},
            {},
            ValueError,
            "part names",
        ),
        (torch.rand(3, T, H, W), torch.rand(3, T, H, W), {"obj": object()}, {}, TypeError, "JSON"),
        (torch.rand(3, T, H, W), torch.rand(3, T, H, W), None, {"fps": 0}, ValueError, "fps"),
        (
            torch.rand(3, T, H, W),
            torch.rand(3, T, H, W),
            None,
            {"frame_format": "gif"},
            ValueError,
            "frame_format",
        ),
        (
            torch.rand(3, T, H, W),
            torch.rand(3, T, H, W),
            None,
            {"prediction": torch.rand(2, 4)},
            ValueError,
            "prediction",
        ),
        (
            torch.rand(3, T, H, W),
            torch.rand(3, T, H, W),
            None,
            {"target": 1.5},
            TypeError,
            "target",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors_and_write_nothing(
    tmp_path: Path, video, attr, extra, kwargs, error, match
) -> None:
    writer = SummaryWriter(str(tmp_path))
    attr_before = attr.clone() if isinstance(attr, torch.Tensor) else attr
    with pytest.raises(error, match=match):
        add_relevance_clip(writer, "t", video, attr, extra=extra, **kwargs)
    writer.close()
    assert _events(tmp_path) == []
    if isinstance(attr, torch.Tensor):
        assert torch.equal(attr, attr_before) or bool(torch.isnan(attr).all())


def test_writer_and_tag_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="SummaryWriter"):
        add_relevance_clip(object(), "t", _clip(), torch.rand(3, T, H, W))
    writer = SummaryWriter(str(tmp_path))
    with pytest.raises(ValueError, match="tag"):
        add_relevance_clip(writer, "", _clip(), torch.rand(3, T, H, W))
    writer.close()


def test_spatio_temporal_split_result_is_unpacked_into_parts(
    tmp_path: Path, demo_model: torch.nn.Module, motion_batch
) -> None:
    from captum.attr import Saliency

    from captum_video.attr import SpatioTemporalSplit

    clips, labels, _ = motion_batch
    split = SpatioTemporalSplit(Saliency(demo_model)).attribute(
        clips[:1], target=int(labels[0]), abs=False
    )
    header, blobs, _ = _write(
        tmp_path, "t", clips[:1], split, target=int(labels[0]), extra={"epoch": 3}
    )
    assert header["parts"] == ["joint", "spatial", "temporal"]
    assert header["info"] == {"epoch": 3}
    for name in header["parts"]:
        expected = getattr(split, name)[0].sum(0).double().sum((1, 2))
        np.testing.assert_allclose(header["curves"][name]["sum"], expected, rtol=1e-4, atol=1e-9)
    # spatial + temporal = joint, so the curves add up too.
    np.testing.assert_allclose(
        np.add(header["curves"]["spatial"]["sum"], header["curves"]["temporal"]["sum"]),
        header["curves"]["joint"]["sum"],
        rtol=1e-4,
        atol=1e-6,
    )
