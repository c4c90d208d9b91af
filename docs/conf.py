"""Sphinx configuration: API reference from the docstrings, notebooks as examples."""

import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(pathlib.Path(__file__).parent / "_ext"))

import tailjax  # noqa: E402

project = "tailjax"
author = "tailjax developers"
release = version = tailjax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "plain_math",
]
autodoc_default_options = {"members": True, "show-inheritance": False,
                           "exclude-members": "activation,dtype,parent,name"}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # jaxtyping annotations read badly; docstrings state shapes
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields (NamedTuple fields are documented too)
nb_execution_mode = "off"  # the test suite executes the notebooks
nb_custom_formats = {".py": "notebook_reader.read_percent"}
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".py": "myst-nb"}
exclude_patterns = ["_build", "_ext", "conf.py"]
html_theme = "furo"
suppress_warnings = ["mystnb.unknown_mime_type"]

# The notebooks live in notebooks/ (jupytext percent format); copy them in as examples.
_examples = pathlib.Path(__file__).parent / "examples"
_examples.mkdir(exist_ok=True)
for _nb in sorted((ROOT / "notebooks").glob("[0-9]*.py")):
    shutil.copy(_nb, _examples / _nb.name)
