"""A griffe extension for the API reference: the docstrings' Sphinx roles become links.

rsb-tune's docstrings cross-reference with Sphinx roles (:func:`load_study`,
:class:`rsb_tune.errors.UserError`) and end a paragraph before a literal block with ``::``.
mkdocstrings renders Markdown, so each role becomes an *optional* autorefs link: a link where
the target is documented on the site, plain code where it is not (an internal module that the
reference leaves out). A relative name is resolved in the docstring's own scope.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):`~?([^`<>]+?)`")
_LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)


class RstRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:  # noqa: ARG002 - griffe's hook signature
        """Once a package is loaded (its names resolve), rewrite every docstring in it."""
        todo = [pkg]
        while todo:
            obj = todo.pop()
            todo.extend(member for member in obj.members.values() if not member.is_alias)
            if obj.docstring is not None:
                obj.docstring.value = _markdown(obj.docstring.value, obj)


def _markdown(text: str, obj: griffe.Object) -> str:
    def link(match: re.Match) -> str:
        name = match[1].strip()
        try:
            target = name if name.split(".")[0] in ("rsb_tune", "analysis") else obj.resolve(name)
        except Exception:  # noqa: BLE001 - griffe raises NameResolutionError, and aliases their own
            target = name
        return f'<autoref identifier="{target}" optional><code>{name}</code></autoref>'

    return _LITERAL.sub(r"\1:", _ROLE.sub(link, text))
