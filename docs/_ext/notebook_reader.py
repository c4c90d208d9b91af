"""Read a jupytext percent-format notebook for myst-nb, with Python as its language."""

import jupytext


def read_percent(text: str):
    notebook = jupytext.reads(text, fmt="py:percent")
    notebook.metadata.setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"}
    )
    notebook.metadata.setdefault("language_info", {"name": "python"})
    return notebook
