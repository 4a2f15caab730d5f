"""Check that every notebook in ``tutorials/`` is linked into ``docs/tutorials/``.

The site renders the tutorials through symbolic links (``docs/tutorials/NAME.ipynb ->
../../tutorials/NAME.ipynb``). A new tutorial without a link, or a link to a notebook that
is gone, is reported as a warning, which fails a ``-W`` build.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)


def check_links(app) -> None:  # noqa: ANN001 - Sphinx passes its application
    docs = Path(app.srcdir)
    notebooks = {p.name for p in (docs.parent / "tutorials").glob("*.ipynb")}
    links = {p.name: p for p in (docs / "tutorials").glob("*.ipynb")}
    for name in sorted(notebooks - set(links)):
        logger.warning(
            "tutorials/%s is not in the documentation: add the link with "
            "`ln -s ../../tutorials/%s docs/tutorials/%s` and list it in docs/tutorials/index.rst",
            name,
            name,
            name,
        )
    for name, link in sorted(links.items()):
        if not link.exists():
            logger.warning("docs/tutorials/%s points to a notebook that does not exist", name)


def setup(app):  # noqa: ANN001, ANN201 - Sphinx's extension hook
    app.connect("builder-inited", check_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
