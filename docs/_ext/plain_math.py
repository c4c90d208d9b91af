"""Docstrings in tailjax write math in plain text (``|x|``, ``x*``, ``(..., *image)``): escape
``|`` and ``*`` outside literals so reStructuredText does not read them as markup."""

import re

_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _escape(text: str) -> str:
    parts = _LITERAL.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
    return "".join(parts)


def escape_plain_math(app, what, name, obj, options, lines):
    literal_indent = None  # indentation of the paragraph that opened a literal block (::)
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if literal_indent is not None:
            if not stripped or len(indent) > literal_indent:
                continue
            literal_indent = None
        if line.rstrip().endswith("::"):
            literal_indent = len(indent)
        if stripped.startswith((">>>", "...")):
            continue
        bullet = ""
        if stripped.startswith(("* ", "- ")):
            bullet, stripped = stripped[:2], stripped[2:]
        lines[i] = indent + bullet + _escape(stripped)


def setup(app):
    app.connect("autodoc-process-docstring", escape_plain_math)
    return {"parallel_read_safe": True}
