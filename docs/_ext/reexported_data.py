"""Document every name a module exports in ``__all__``, including re-exported data.

autodoc (Sphinx 9) documents a module-level constant only when the module that is documented
*assigns* it with a ``#:`` comment; a constant defined in ``captum_video.registry.normalization``
and exported by ``captum_video.registry`` is silently skipped, and so is an exported function
without a docstring. This extension

* keeps every ``__all__`` member that autodoc would skip as undocumented;
* adds an ``autodata`` entry to the module's page for each exported constant or type alias
  that autodoc does not document itself;
* fills in the ``#:`` comment of such a constant from the module that defines it, and warns
  (which fails a ``-W`` build) when there is none, so every export gets a description;
* drops values longer than :data:`MAX_VALUE` characters from the signatures (the 400
  Kinetics class names, the method registry, the composites); short ones stay;
* keeps napoleon away from the ``#:`` comments of constants and attributes: napoleon reads a
  first line ``Text: more text`` as ``type: description`` and would print "Type: Text".
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from sphinx import addnodes
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Longest value written into a signature (``NAME = value``), in characters.
MAX_VALUE = 120


def _is_data(obj: Any) -> bool:
    return not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj))


def _own_attr_docs(modname: str) -> dict[tuple[str, str], list[str]]:
    try:
        return ModuleAnalyzer.for_module(modname).find_attr_docs()
    except Exception:  # noqa: BLE001 - no Python source to analyse
        return {}


def keep_exported(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> Any:
    """Keep functions and classes listed in ``__all__`` that have no docstring."""
    if what != "module" or not skip or inspect.ismodule(obj):
        return None
    current = getattr(app.env, "current_document", None)
    module = sys.modules.get(getattr(current, "autodoc_module", "") or "")
    if module is not None and name in getattr(module, "__all__", ()):
        return False
    return None


def add_exported_data(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Append an ``autodata`` entry for each exported constant autodoc would skip."""
    if what != "module" or not getattr(options, "members", None):
        return
    exported = getattr(obj, "__all__", None)
    if not exported:
        return
    own = _own_attr_docs(name)
    for member in exported:
        value = getattr(obj, member, None)
        if _is_data(value) and ("", member) not in own:
            lines.extend(["", f".. autodata:: {name}.{member}"])


def _comment_of(package: str, attr: str, obj: Any) -> list[str]:
    """The ``#:`` comment of ``attr`` in the module below ``package`` that defines ``obj``."""
    for modname, module in sorted(sys.modules.items()):
        if module is None or not (modname == package or modname.startswith(package + ".")):
            continue
        if getattr(module, attr, None) is not obj:
            continue
        docs = _own_attr_docs(modname)
        if ("", attr) in docs:
            return list(docs[("", attr)])
    return []


def fill_data_docs(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Describe a constant with the ``#:`` comment where it is defined, plus a short value."""
    if what != "data":
        return
    package, _, attr = name.rpartition(".")
    if _is_type_doc(obj, lines):
        del lines[:]  # autodoc fell back to the docstring of the value's type (dict, tuple)
    if not lines:
        lines.extend(_comment_of(package.split(".")[0], attr, obj))
    if not lines:
        logger.warning(
            "%s is exported but undocumented: give it a #: comment where it is assigned", name
        )


_ORIGINAL: dict[str, list[str]] = {}


def _is_type_doc(obj: Any, lines: list[str]) -> bool:
    type_doc = inspect.getdoc(type(obj)) or ""
    return bool(lines and type_doc and lines[0].strip() == type_doc.splitlines()[0].strip())


def remember_comment(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Before napoleon: keep the ``#:`` comment of a constant or attribute as written."""
    if what in ("data", "attribute") and lines and not _is_type_doc(obj, lines):
        _ORIGINAL[name] = list(lines)


def restore_comment(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """After napoleon: put the comment back (it has no Google-style sections to convert)."""
    original = _ORIGINAL.pop(name, None)
    if what in ("data", "attribute") and original is not None:
        lines[:] = original


def drop_long_values(app: Any, doctree: Any) -> None:
    """Remove ``= value`` annotations longer than :data:`MAX_VALUE` from data signatures."""
    for desc in doctree.findall(addnodes.desc):
        if desc.get("domain") != "py" or desc.get("objtype") not in ("data", "attribute"):
            continue
        for annotation in list(desc.findall(addnodes.desc_annotation)):
            text = annotation.astext().strip()
            if text.startswith("=") and len(text) > MAX_VALUE:
                annotation.parent.remove(annotation)


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-skip-member", keep_exported)
    app.connect("autodoc-process-docstring", remember_comment, priority=100)
    app.connect("autodoc-process-docstring", restore_comment, priority=900)
    app.connect("autodoc-process-docstring", add_exported_data)
    app.connect("autodoc-process-docstring", fill_data_docs)
    app.connect("doctree-read", drop_long_values)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
