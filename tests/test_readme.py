"""The README's two set-up commands stay true: CI runs the same test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first_screen = text[: text.index("## ")]
    return re.findall(r"```bash\n(.+?)\n```", first_screen, flags=re.S)


def test_first_screen_has_exactly_two_setup_commands() -> None:
    commands = _commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "captum-video demo" in demo and "constraints.txt" in demo
    assert "pytest" in tests and "constraints.txt" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme_tests = _commands()[1].strip()
    # CI adds -q to pip only; otherwise the line must be the README's.
    assert readme_tests in ci, "the README's test command is not a line of .ci/run"


def test_constraints_pin_torch_and_torchvision() -> None:
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins


def test_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.+?)\n```", text, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["tube"].shape == (1, 1, 16, 32, 32)  # type: ignore[attr-defined]
    assert (tmp_path / "tube.webm").stat().st_size > 0
