"""Griffe extensions for the API reference (mkdocs.yml loads them).

- :class:`SphinxRoles`: the docstrings cross-reference in Sphinx's roles (``:class:`~a.b.C```),
  which Markdown would show literally; each becomes inline code of the name (``C``, or ``a.b.C``
  without ``~``).
- :class:`FieldHelp`: a settings field (``Settings``, ``Machine``) has no docstring of its own; its
  one-line help, the text ``--help`` and the studio show, lives in ``field(metadata=_opt("..."))``.
  That text becomes the field's docstring, and its default its value, so the reference lists every
  setting with its help and default.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)\.?([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    short, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if short else name}`"


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles in every docstring as inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)


def _field_help(source: str) -> tuple[str, str] | None:
    """(help text, default's source) of ``field(default=..., metadata=_opt("help", ...))``, or None
    for any other value."""
    try:
        call = ast.parse(source, mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "field"):
        return None
    keywords = {keyword.arg: keyword.value for keyword in call.keywords}
    meta, default = keywords.get("metadata"), keywords.get("default")
    if (isinstance(meta, ast.Call) and getattr(meta.func, "id", None) == "_opt" and default is not None
            and meta.args and isinstance(meta.args[0], ast.Constant) and isinstance(meta.args[0].value, str)):
        return meta.args[0].value, ast.unparse(default)
    return None


class FieldHelp(griffe.Extension):
    """Gives each settings field without a docstring its ``help`` metadata as one, and shows its
    default as its value (not the ``field(...)`` call)."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is None and attr.value is not None:
            found = _field_help(str(attr.value))
            if found:
                text, default = found
                attr.docstring = griffe.Docstring(text[0].upper() + text[1:] + ".", parent=attr)
                attr.value = default
