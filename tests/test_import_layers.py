"""Data flows one way: no module of the package imports a module of a higher layer.

Every ``import`` and ``from ... import`` statement of every module is read from its source (also
those inside functions, which a runtime check would miss). A module belongs to the layer of
the longest prefix that names it below; a module in no layer fails the test, so a new module
must be placed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first. A module may import its own layer and the layers below.
LAYERS: list[list[str]] = [
    ["captum_video_tb"],  # the TensorBoard plugin: tensorboard and the standard library only
    [
        "captum_video",  # the package root (version only)
        "captum_video._hashing",
        "captum_video._model_state",
        "captum_video._scalars",
        "captum_video._targets",
        "captum_video._validation",
        "captum_video._memory",
        "captum_video._distributed",
        "captum_video.relevance",
        "captum_video.flow",
        "captum_video.datasets",
    ],
    ["captum_video.models"],
    ["captum_video.registry"],
    ["captum_video.io", "captum_video.baselines", "captum_video.masks"],
    ["captum_video.video_folder"],
    ["captum_video.attr"],
    ["captum_video.metrics", "captum_video.concept"],
    ["captum_video.visualization", "captum_video.tensorboard", "captum_video.units"],
    ["captum_video.influence"],
    ["captum_video.explainers", "captum_video._chunking"],
    ["captum_video.timeline"],
    ["captum_video.stream"],
    [
        "captum_video.pipeline.identity",
        "captum_video.pipeline.lock",
        "captum_video.pipeline.failures",
    ],
    ["captum_video.pipeline.items", "captum_video.pipeline.store"],
    ["captum_video.pipeline.verify"],
    ["captum_video.pipeline.run", "captum_video.pipeline._arguments"],
    ["captum_video.pipeline.verdict"],
    ["captum_video.pipeline.summary"],
    [
        "captum_video.pipeline._html",
        "captum_video.pipeline._expert",
        "captum_video.pipeline.report",
    ],
    ["captum_video.pipeline.publish"],
    ["captum_video.pipeline.dataset", "captum_video.pipeline"],
    ["captum_video.cli"],
]

#: What the plugin may import besides itself: it runs inside TensorBoard, without torch.
PLUGIN_ALLOWED = {"tensorboard", "werkzeug"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = [
        *ROOT.joinpath("captum_video").rglob("*.py"),
        *ROOT.joinpath("captum_video_tb").rglob("*.py"),
    ]
    return {_module_name(p): p for p in sorted(files)}


def _imports(path: Path, name: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import statement, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` may import the sub-module pkg.sub
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return found


def layer_of(module: str) -> int | None:
    """Index of the layer whose longest prefix names ``module``."""
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def violations(modules: dict[str, Path]) -> tuple[list[str], list[str]]:
    """Upward imports and modules in no layer."""
    upward: list[str] = []
    unplaced: list[str] = []
    for name, path in modules.items():
        own = layer_of(name)
        if own is None:
            unplaced.append(name)
            continue
        for line, imported in _imports(path, name):
            if not imported.startswith(("captum_video", "captum_video_tb")):
                continue
            if imported not in modules and imported.rpartition(".")[0] in modules:
                imported = imported.rpartition(".")[
                    0
                ]  # `from pkg import name`: a name, not a module
            other = layer_of(imported)
            entry = f"{path.name}:{line} ({name}) imports {imported}"
            if other is not None and other > own and entry not in upward:
                upward.append(entry)
    return upward, unplaced


def test_no_module_imports_a_higher_layer() -> None:
    upward, unplaced = violations(_modules())
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    fake = tmp_path / "captum_video" / "attr"
    fake.mkdir(parents=True)
    low = fake / "_tube.py"
    low.write_text("def f():\n    from captum_video.pipeline import explain_dataset\n")
    upward, _ = violations({"captum_video.attr._tube": low})
    assert upward and all("imports captum_video.pipeline" in line for line in upward)


def test_the_plugin_imports_only_tensorboard_and_the_standard_library() -> None:
    bad = []
    for name, path in _modules().items():
        if not name.startswith("captum_video_tb"):
            continue
        for line, imported in _imports(path, name):
            top = imported.split(".")[0]
            if top in sys.stdlib_module_names or top in PLUGIN_ALLOWED | {"captum_video_tb", ""}:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not bad, bad


@pytest.mark.parametrize("module", ["captum_video.attr._tube", "captum_video.registry._family"])
def test_known_modules_have_a_layer(module: str) -> None:
    assert layer_of(module) is not None
