"""The plugin's routes over event files written by add_relevance_clip.

Every data test runs twice: over the Python multiplexer (``--load_fast=false``) and over the
Rust data server that ``tensorboard`` uses by default, both fed the flags TensorBoard's own
parser produced after our loader's ``fix_flags`` (so the "keep all steps" default is tested
as TensorBoard applies it).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import werkzeug
from PIL import Image
from tensorboard import program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.data import server_ingester
from tensorboard.plugins import base_plugin
from tensorboard.util import grpc_util
from torch.utils.tensorboard import SummaryWriter

from captum_video.tensorboard import add_relevance_clip
from captum_video_tb import metadata
from captum_video_tb.plugin import CaptumVideoLoader

T, H, W = 4, 6, 8
STEPS = 12  # more than the 10 blob-sequence samples TensorBoard keeps by default
PREFIX = "/data/plugin/captum_video"


def _clip(step: int) -> torch.Tensor:
    return (torch.arange(3 * T * H * W).reshape(3, T, H, W) * 7 + step * 11) % 256 / 255.0


def _write_logdir(logdir: Path) -> dict:
    headers = {}
    writer = SummaryWriter(str(logdir / "run_a"))
    for step in range(STEPS):
        attr = torch.linspace(-1, 2, 3 * T * H * W).reshape(3, T, H, W) * (step + 1)
        headers[("run_a", step)] = add_relevance_clip(
            writer,
            "relevance/moving",
            _clip(step),
            attr,
            step,
            target=1,
            prediction=torch.tensor([0.0, 2.0, 1.0]),
            method="Saliency",
            extra={"spatial": attr * 0.25, "temporal": attr * 0.75},
            class_names=["a", "b", "c"],
        )
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    writer = SummaryWriter(str(logdir / "run_b"))
    for step in (5, 9):
        headers[("run_b", step)] = add_relevance_clip(
            writer, "relevance/other", _clip(step), torch.rand(T, H, W), step, frame_format="jpeg"
        )
    writer.close()
    return headers


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("logs")
    return path, _write_logdir(path)


def _flags(logdir: Path, *extra: str):
    # The default plugin list: the core loader (it defines --logdir etc.), the first-party
    # plugins and the dynamic ones found through entry points, ours included.
    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", str(logdir), "--reload_interval", "0", *extra])
    return tb.flags


def _app(provider, flags) -> werkzeug.Client:
    context = base_plugin.TBContext(
        data_provider=provider,
        flags=flags,
        logdir=flags.logdir,
        sampling_hints=flags.samples_per_plugin,
    )
    plugin = CaptumVideoLoader().load(context)
    app = application.TensorBoardWSGI([plugin], data_provider=provider)
    return werkzeug.Client(app, werkzeug.wrappers.Response)


@pytest.fixture(scope="module", params=["multiplexer", "data_server"])
def client(request: pytest.FixtureRequest, logdir: tuple[Path, dict]):
    path, _ = logdir
    if request.param == "multiplexer":
        flags = _flags(path, "--load_fast", "false", "--reload_task", "blocking")
        ingester = data_ingester.LocalDataIngester(flags)
        ingester.start()
        yield _app(ingester.data_provider, flags)
        return
    flags = _flags(path, "--load_fast", "true")
    ingester = server_ingester.SubprocessServerDataIngester(
        server_binary=server_ingester.get_server_binary(),
        logdir=str(path),
        reload_interval=0,
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin=flags.samples_per_plugin,
    )
    ingester.start()
    client = _app(ingester.data_provider, flags)
    try:
        deadline = time.monotonic() + 60
        while len(client.get(f"{PREFIX}/tags").get_json()) < 2:  # the server loads async
            assert time.monotonic() < deadline, "data server did not load the logdir"
            time.sleep(0.2)
        yield client
    finally:
        ingester._stdin_handle.close()  # started with --die-after-stdin


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_loader_keeps_every_step_unless_the_user_says_otherwise(tmp_path: Path) -> None:
    assert _flags(tmp_path).samples_per_plugin == {metadata.PLUGIN_NAME: 0}
    flags = _flags(tmp_path, "--samples_per_plugin", "captum_video=3,images=4")
    assert flags.samples_per_plugin == {metadata.PLUGIN_NAME: 3, "images": 4}


def test_listing_entry_page_and_frontend_files(client: werkzeug.Client) -> None:
    listing = client.get("/data/plugins_listing").get_json()[metadata.PLUGIN_NAME]
    assert listing["enabled"] is True and listing["tab_name"] == "Relevance Video"
    assert listing["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": f"{PREFIX}/index.js",
    }
    entry = client.get(f"/data/plugin_entry.html?name={metadata.PLUGIN_NAME}")
    assert entry.status_code == 200 and 'import("./index.js")' in entry.get_data(as_text=True)

    index = client.get(f"{PREFIX}/index.js")
    assert index.status_code == 200 and index.mimetype == "text/javascript"
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    source = (Path(__file__).parents[2] / "captum_video_tb/static/index.js").read_bytes()
    assert index.get_data() == source and b"export async function render()" in source
    css = client.get(f"{PREFIX}/static/style.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    # No CDN: every URL the frontend names is relative to the plugin.
    assert b"http://" not in source and b"https://" not in source


@pytest.mark.parametrize(
    "path",
    [
        "/static/../plugin.py",
        "/static/%2e%2e/plugin.py",
        "/static/..%2fplugin.py",
        "/static/..%5cplugin.py",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/",
        "/static/.hidden",
        "/static/missing.js",
        "/static/__init__.py",
    ],
)
def test_static_route_refuses_anything_but_vendored_files(
    client: werkzeug.Client, path: str
) -> None:
    response = client.get(PREFIX + path)
    assert response.status_code == 404
    assert b"import" not in response.get_data() and b"root:" not in response.get_data()


def test_tags_and_all_steps(client: werkzeug.Client) -> None:
    tags = client.get(f"{PREFIX}/tags").get_json()
    assert sorted(tags) == ["run_a", "run_b"]
    assert tags["run_a"] == {
        "relevance/moving": {"max_step": STEPS - 1, "max_length": 1 + 4 * T, "description": ""}
    }
    assert list(tags["run_b"]) == ["relevance/other"]
    steps = client.get(f"{PREFIX}/steps?run=run_a&tag=relevance/moving").get_json()
    assert [s["step"] for s in steps] == list(range(STEPS))  # none sampled away
    assert all(isinstance(s["wall_time"], float) for s in steps)


def test_clip_header_and_blobs_match_what_was_written(
    client: werkzeug.Client, logdir: tuple[Path, dict]
) -> None:
    _, headers = logdir
    clip = client.get(f"{PREFIX}/clip?run=run_a&tag=relevance/moving&step=5").get_json()
    written = json.loads(json.dumps(headers[("run_a", 5)]))
    assert clip["step"] == 5 and {k: clip["header"][k] for k in written} == written
    assert sorted(clip["frames"]) == ["joint", "original", "spatial", "temporal"]
    assert all(len(keys) == T for keys in clip["frames"].values())

    original = client.get(f"{PREFIX}/blob", query_string={"key": clip["frames"]["original"][2]})
    assert original.status_code == 200 and original.mimetype == "image/png"
    expected = (_clip(5)[:, 2].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(_png(original.get_data()), expected)

    header = clip["header"]
    codes = _png(client.get(f"{PREFIX}/blob?key={clip['frames']['spatial'][3]}").get_data())
    attr = torch.linspace(-1, 2, 3 * T * H * W).reshape(3, T, H, W) * 6 * 0.25
    assert header["encoding"] == "unsigned"  # the channel sums are all positive
    values = np.vectorize(metadata.decode_relevance)(codes, "unsigned", header["scale"])
    np.testing.assert_allclose(values, attr.sum(0)[3].numpy(), atol=header["scale"] / 255 + 1e-6)

    latest = client.get(f"{PREFIX}/clip?run=run_b&tag=relevance/other").get_json()
    assert latest["step"] == 9 and latest["header"]["parts"] == ["joint"]
    jpeg = client.get(f"{PREFIX}/blob?key={latest['frames']['original'][0]}")
    assert jpeg.mimetype == "image/jpeg"


def test_blob_route_serves_http_ranges(client: werkzeug.Client) -> None:
    clip = client.get(f"{PREFIX}/clip?run=run_a&tag=relevance/moving&step=0").get_json()
    url = f"{PREFIX}/blob?key={clip['frames']['original'][0]}"
    full = client.get(url)
    data = full.get_data()
    assert full.headers["Accept-Ranges"] == "bytes" and len(data) > 20

    part = client.get(url, headers={"Range": "bytes=4-11"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 4-11/{len(data)}"
    assert part.get_data() == data[4:12]
    tail = client.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.get_data() == data[-5:]
    assert client.get(url, headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416
    # Conditional GET: same key, same bytes, same ETag.
    again = client.get(url, headers={"If-None-Match": full.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "query, status",
    [
        ("/steps", 400),
        ("/steps?run=run_a", 400),
        ("/steps?run=nope&tag=relevance/moving", 404),
        ("/steps?run=run_a&tag=nope", 404),
        ("/clip?run=run_a&tag=relevance/moving&step=abc", 400),
        ("/clip?run=run_a&tag=relevance/moving&step=999", 404),
        ("/blob", 400),
    ],
)
def test_bad_requests(client: werkzeug.Client, query: str, status: int) -> None:
    assert client.get(PREFIX + query).status_code == status


def test_empty_logdir_leaves_the_tab_inactive_with_empty_tags(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path / "only_scalars"))
    writer.add_scalar("loss", 1.0, 0)
    writer.close()
    flags = _flags(tmp_path, "--load_fast", "false", "--reload_task", "blocking")
    ingester = data_ingester.LocalDataIngester(flags)
    ingester.start()
    client = _app(ingester.data_provider, flags)
    listing = client.get("/data/plugins_listing").get_json()[metadata.PLUGIN_NAME]
    assert listing["enabled"] is False
    assert client.get(f"{PREFIX}/tags").get_json() == {}


def test_plugin_package_imports_neither_torch_nor_captum_video() -> None:
    code = (
        "import sys, captum_video_tb.plugin, captum_video_tb.metadata; "
        "bad = [m for m in ('torch', 'captum', 'captum_video') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    points = [e for e in entry_points(group="tensorboard_plugins") if e.name == "captum_video"]
    assert [e.value for e in points] == ["captum_video_tb.plugin:CaptumVideoLoader"]
    assert points[0].load() is CaptumVideoLoader


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: Hostile requests: each must get a 4xx (400 for a malformed parameter, 404 for a well-formed
#: one that names nothing; ``4``: either), never a 500 and never a traceback in the server log.
HOSTILE = [
    ("/blob?key=!!!not-base64!!!", 400),
    ("/blob?key=%00", 400),
    ("/blob?key=" + "A" * 5001, 400),
    ("/blob?key=../../../../etc/passwd", 400),
    ("/blob?key=..%2F..%2Fplugin.py", 400),
    ("/blob?key=" + _b64(b"not json at all"), 400),
    ("/blob?key=" + _b64(b"\xff\xfe\x00binary"), 400),
    ("/blob?key=" + _b64(b"{}"), 400),
    ("/blob?key=" + _b64(b"[]"), 400),
    ("/blob?key=" + _b64(b'["", "captum_video", "run_a", "relevance/moving", 0]'), 400),
    # Well-formed keys with a step of the wrong type name nothing: 404 from the multiplexer.
    ("/blob?key=" + _b64(b'["", "captum_video", "run_a", "relevance/moving", "0", "0"]'), 4),
    ("/blob?key=" + _b64(b"[null, null, null, null, null, null]"), 400),
    ("/blob?key=" + _b64(b'["", "captum_video", 1, 2, 3.5, {}]'), 400),
    ("/blob?key=" + _b64(b'["", "captum_video", "run_a", "relevance/moving", 1e400, 0]'), 4),
    ("/blob?key=" + _b64(json.dumps(["", "captum_video", "run_a", "x", 10**30, 0]).encode()), 400),
    ("/blob?key=" + _b64(b'["", "captum_video", "run_a", "relevance/moving", 0, 99999]'), 400),
    ("/blob?key=" + _b64(b'["", "captum_video", "nope", "nope", 0, 0]'), 400),
    ("/blob?key=" + _b64(b"[" * 5000 + b"]" * 5000), 400),
    ("/blob?key=a&key=b", 400),
    ("/steps?run=&tag=", 404),
    ("/steps?run=%00&tag=%00", 404),
    ("/steps?run=../../etc&tag=passwd", 404),
    ("/clip?run=run_a&tag=relevance/moving&step=" + "9" * 5000, 400),
    ("/clip?run=run_a&tag=relevance/moving&step=1e3", 400),
    ("/clip?run=run_a&tag=relevance/moving&step=%20", 400),
    ("/clip?run=run_a&tag=relevance/moving&step=-1", 404),
    ("/clip?run=run_a&tag=relevance/moving&step=99999999999999999999999", 404),
    ("/clip?run=run_a&tag=relevance/moving&step=0x10", 400),
    ("/clip?run=run_a&step=1", 400),
    ("/clip?tag=relevance/moving", 400),
    ("/clip?run=%ff%fe&tag=%ff", 404),
]


@pytest.mark.parametrize("query, status", HOSTILE)
def test_hostile_requests_get_4xx_never_500(
    client: werkzeug.Client, query: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get(PREFIX + query)
    if status == 4:
        assert response.status_code in (400, 404), response.get_data()[:300]
    else:
        assert response.status_code == status, response.get_data()[:300]
    assert b"Traceback" not in response.get_data()
    assert not [r for r in caplog.records if r.levelno >= 40], "an error was logged"
