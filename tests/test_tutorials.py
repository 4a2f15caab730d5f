"""Execute every notebook in ``tutorials/`` from top to bottom, one test per notebook.

Notebooks run in a fresh ``python3`` kernel (jupyter_client starts it with this test's own
interpreter), in the ``tutorials/`` folder, with ipykernel's inline matplotlib backend (Agg
rendering to PNG outputs, no display needed). A cell that raises fails the test with the
notebook's name, the cell and the traceback; a notebook that makes figures must show them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the [test] extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the [test] extra installs nbclient")

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def test_there_are_tutorials() -> None:
    assert NOTEBOOKS, f"no notebooks found in {TUTORIALS}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_tutorial_executes(notebook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Let the kernel pick its inline backend (Agg + PNG outputs) even where CI exports
    # MPLBACKEND=Agg, which would silently drop every figure from the outputs.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{notebook.name} failed:\n{error}")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{notebook.name} produced error outputs: {errors}"
    source = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    if "visualiz" in source or "plot_" in source:
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert images, f"{notebook.name} draws figures but none reached the outputs"
