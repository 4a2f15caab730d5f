"""Directives that render parts of the package at build time, so the pages cannot drift:

* ``.. captum-video-help:: [SUBCOMMAND]``: the ``--help`` text of the ``captum-video`` command
  (from :func:`captum_video.cli.build_parser`);
* ``.. captum-video-methods::``: a table of the method registry
  (:data:`captum_video.explainers.EXPLAINERS`), the names ``--method`` and
  :func:`captum_video.pipeline.explain_dataset` accept.
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from docutils.parsers.rst import Directive


def help_text(subcommand: str | None = None, width: int = 90) -> str:
    """The ``--help`` output of ``captum-video`` (or of one sub-command), ``width`` columns."""
    from captum_video.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps to the terminal width
    try:
        parser = build_parser()
        if subcommand is None:
            return parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                if subcommand in action.choices:
                    return action.choices[subcommand].format_help()
        raise ValueError(f"captum-video has no sub-command {subcommand!r}")
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


class CaptumVideoHelp(Directive):
    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        sub = self.arguments[0] if self.arguments else None
        try:
            text = help_text(sub)
        except ValueError as err:
            raise self.error(str(err)) from err
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class CaptumVideoMethods(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from captum_video.explainers import EXPLAINERS

        table = nodes.table(classes=["captum-video-methods"])
        group = nodes.tgroup(cols=3)
        table += group
        for width in (26, 12, 62):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += _row(["name", "layer method", "what it computes"])
        body = nodes.tbody()
        group += body
        for name, entry in EXPLAINERS.items():
            body += _row([name, "yes" if entry.layer_method else "", entry.description], code=0)
        return [table]


def _row(cells: list[str], code: int | None = None) -> nodes.row:
    row = nodes.row()
    for i, text in enumerate(cells):
        entry = nodes.entry()
        para = nodes.paragraph()
        para += nodes.literal(text, text) if i == code else nodes.Text(text)
        entry += para
        row += entry
    return row


def setup(app):  # noqa: ANN001, ANN201 - Sphinx's extension hook
    app.add_directive("captum-video-help", CaptumVideoHelp)
    app.add_directive("captum-video-methods", CaptumVideoMethods)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
