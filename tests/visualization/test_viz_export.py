"""write_video: the files decode back with the right frames, size and hot spot."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _viz_pixels import blob_clip, hottest, near, saturation

from captum_video.visualization import overlay_frames, render_tube_stack_frames, write_video
from captum_video.visualization.encode import VideoEncoder


def decode(path: Path) -> np.ndarray:
    """All frames of a file, decoded by OpenCV, as (T, H, W, 3) RGB."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"OpenCV cannot open {path}"
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


@pytest.mark.parametrize("suffix", [".webm", ".mp4", ".gif", ".avi"])
def test_side_by_side_file_decodes_with_frames_size_and_hot_spot(
    tmp_path: Path, suffix: str
) -> None:
    video, attr, centres = blob_clip(frames=6, size=24)
    scale = 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mp4v warning has its own test
        out = write_video(attr, tmp_path / f"clip{suffix}", fps=6, video=video, scale=scale)
    assert out == tmp_path / f"clip{suffix}" and out.stat().st_size > 0
    frames = decode(out)
    assert frames.shape == (6, 24 * scale, 2 * 24 * scale, 3)
    width = 24 * scale
    original = video.permute(1, 2, 3, 0).numpy() * 255
    for t, centre in enumerate(centres):
        left, right = frames[t, :, :width].astype(float), frames[t, :, width:].astype(float)
        # left half is the clip itself (up to lossy coding)
        small_left = cv2.resize(left, (24, 24), interpolation=cv2.INTER_AREA)
        assert np.abs(small_left - original[t]).mean() < 12
        # right half is the overlay, hottest on the blob
        assert near(hottest(saturation(right), (24, 24)), centre, tol=1.5), (suffix, t)


def test_mp4_is_h264_and_webm_vp8_with_no_codec_noise(tmp_path: Path, capfd) -> None:
    av = pytest.importorskip("av")
    video, attr, _ = blob_clip(frames=4, size=16)
    for suffix, codec in ((".mp4", "h264"), (".webm", "vp8")):
        out = write_video(attr, tmp_path / f"a{suffix}", video=video, fps=4)
        with av.open(str(out)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == codec  # what browsers play
            assert sum(1 for _ in container.decode(stream)) == 4
    captured = capfd.readouterr()
    assert "FFMPEG" not in captured.err and "not supported" not in captured.err


def test_captions_name_what_is_shown_and_count_frames_from_one(tmp_path: Path) -> None:
    video, attr, _ = blob_clip(frames=3, size=32)
    plain = decode(write_video(attr, tmp_path / "plain.avi", video=video, fps=3, scale=2))
    captioned = decode(
        write_video(
            attr, tmp_path / "cap.avi", video=video, fps=3, scale=2,
            caption="gradcam_tube | class 'right'", times=[0.0, 0.5, 1.0],
        )
    )  # fmt: skip
    strip = captioned.shape[1] - plain.shape[1]
    assert strip > 0 and captioned.shape[2] == plain.shape[2]
    # the strip holds light text on a dark ground, different in every frame (frame n/3)
    top = captioned[:, :strip].astype(float)
    assert top.mean() < 90 and top.max() > 150
    assert np.abs(top[0] - top[1]).mean() > 0.5
    with pytest.raises(ValueError, match="caption"):
        write_video(attr, tmp_path / "t.avi", video=video, times=[0.0, 0.5, 1.0])


def test_encoder_writes_frames_as_they_come(tmp_path: Path) -> None:
    with VideoEncoder(tmp_path / "stream.mp4", fps=10) as encoder:
        for t in range(5):
            encoder.write(np.full((31, 33, 3), 40 * t, dtype=np.uint8))  # odd: padded
    frames = decode(tmp_path / "stream.mp4")
    assert frames.shape == (5, 32, 34, 3)
    assert abs(float(frames[4].mean()) - 160) < 6
    with pytest.raises(ValueError, match="differs"):
        with VideoEncoder(tmp_path / "mixed.webm", fps=10) as encoder:
            encoder.write(np.zeros((8, 8, 3), np.uint8))
            encoder.write(np.zeros((10, 8, 3), np.uint8))


def test_rendered_frames_rgba_and_odd_sizes(tmp_path: Path) -> None:
    video, attr, _ = blob_clip(frames=3, size=24)
    stack = render_tube_stack_frames(attr, video, plane_size=33, vertical_step=9)
    out = write_video(stack, tmp_path / "tube.webm", fps=3)
    frames = decode(out)
    even = (stack.shape[1] + stack.shape[1] % 2, stack.shape[2] + stack.shape[2] % 2)
    assert frames.shape == (3, *even, 3)
    # transparent pixels were flattened onto white
    transparent = stack[0, ..., 3] == 0
    padded = np.pad(transparent, ((0, even[0] - transparent.shape[0]), (0, 0)), mode="edge")
    padded = np.pad(padded, ((0, 0), (0, even[1] - transparent.shape[1])), mode="edge")
    assert frames[0][padded].mean() > 235
    # heat map only, no clip
    heat = write_video(attr, tmp_path / "heat.gif", fps=3)
    decoded = decode(heat)
    np.testing.assert_allclose(decoded, overlay_frames(attr, method="heat_map"), atol=12)


def test_codec_missing_error_names_it(tmp_path: Path) -> None:
    video, attr, _ = blob_clip(frames=2, size=8)
    # Refused when the encoder is made (before a file exists): FFmpeg has no such encoder.
    with pytest.raises(ValueError, match="codec 'nope' is not an encoder"):
        write_video(attr, tmp_path / "x.avi", video=video, codec="nope")
    assert not (tmp_path / "x.avi").exists()


def test_unwritable_folder_and_infinite_fps_are_named(tmp_path: Path, monkeypatch) -> None:
    video, attr, _ = blob_clip(frames=2, size=8)
    for fps in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="fps"):
            write_video(attr, tmp_path / "x.webm", video=video, fps=fps)
    # A read-only folder (simulated: the tests may run as root, who can write anywhere).
    import captum_video.visualization.encode as encode

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(encode.os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(PermissionError, match="locked: permission denied"):
        write_video(attr, locked / "x.webm", video=video)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot create the output folder"):
        write_video(attr, blocker / "sub" / "x.webm", video=video)


def test_bad_arguments(tmp_path: Path) -> None:
    video, attr, _ = blob_clip(frames=2, size=8)
    with pytest.raises(ValueError, match="suffix"):
        write_video(attr, tmp_path / "x.mov", video=video)
    with pytest.raises(ValueError, match="fps"):
        write_video(attr, tmp_path / "x.webm", video=video, fps=0)
    with pytest.raises(ValueError, match="scale"):
        write_video(attr, tmp_path / "x.webm", video=video, scale=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already rendered"):
        write_video(overlay_frames(attr, video), tmp_path / "x.webm", video=video)
    with pytest.raises(TypeError, match="frames_or_attr"):
        write_video([1, 2], tmp_path / "x.webm")
    with pytest.raises(ValueError, match="draws on the clip"):
        write_video(attr, tmp_path / "x.webm", method="blended_heat_map")
    before = attr.clone()
    write_video(attr, tmp_path / "nested" / "dir" / "x.gif", video=video)
    assert torch.equal(attr, before)
