"""Griffe extension for the API reference: Sphinx roles in docstrings become inline code.

The docstrings name other objects the Sphinx way (``:class:`~lightning_unlearn.data.ClassForget```);
Markdown has no such roles, so ``:role:`~a.b.C``` is shown as ``C`` and ``:role:`a.b.C``` as ``a.b.C``,
in code font. Loaded by mkdocstrings (``extensions`` in mkdocs.yml); not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring before mkdocstrings parses it."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
