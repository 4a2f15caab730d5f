"""Sphinx configuration of the captum-video documentation.

Build (warnings are errors; the tutorials are executed, which takes a minute or two)::

    pip install -c constraints.txt -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

``CAPTUM_VIDEO_DOCS_EXECUTE`` chooses how the tutorials run: ``force`` (default: every build
executes them, so their outputs always match the code), ``cache`` (re-execute only notebooks
that changed; the cache lives in the output folder) or ``off`` (no outputs; quick drafts only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the package, also when it is not installed
sys.path.insert(0, str(DOCS / "_ext"))

# The tutorials run in a Jupyter kernel that inherits this environment. MPLBACKEND=Agg (set
# by some CI systems) would override the kernel's inline backend and drop every figure.
os.environ.pop("MPLBACKEND", None)
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

import captum_video  # noqa: E402

project = "captum-video"
author = "captum-video developers"
copyright = "captum-video developers"  # noqa: A001
version = release = captum_video.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # serves MathJax from _static: formulas render offline too
    "sphinx.ext.viewcode",
    "myst_nb",
    "package_directives",
    "tutorial_links",
    "reexported_data",
]

source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path: list[str] = []

# -- API reference ------------------------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "none"  # the Google-style "Args:" sections give every type in words
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False  # Captum's base-class docstrings describe other methods
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False
add_module_names = False
python_use_unqualified_type_names = True

# -- Tutorials (myst-nb) --------------------------------------------------------------------------
nb_execution_mode = os.environ.get("CAPTUM_VIDEO_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "remove"  # library warnings (tqdm, Captum, OpenCV) with local paths
myst_enable_extensions = ["dollarmath"]

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"captum-video {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
