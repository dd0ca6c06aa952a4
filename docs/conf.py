"""Sphinx configuration for the skpeal documentation.

Build (warnings are errors)::

    python -m sphinx -W -b html docs docs/_build/html

Environment variables:

* ``SKPEAL_DOCS_EXAMPLES``: folder of the example scripts (default ``../examples``);
  lets a test build a copy of ``docs/`` in a temporary folder.
* ``SKPEAL_DOCS_PLOT_GALLERY``: ``0`` renders the gallery without running the examples
  (the test suite runs them anyway, see ``tests/test_examples.py``).
"""

import os
from pathlib import Path

import skpeal

HERE = Path(__file__).resolve().parent
EXAMPLES = Path(os.environ.get("SKPEAL_DOCS_EXAMPLES", HERE.parent / "examples")).resolve()

# The examples must never reach for the network while the docs build.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

project = "skpeal"
author = "the skpeal developers"
copyright = "the skpeal developers"  # noqa: A001
release = skpeal.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "gen_modules/*.examples",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "sg_execution_times.rst",
]
root_doc = "index"
default_role = "literal"
nitpicky = False

# -- autodoc / autosummary / numpydoc ------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True}
autodoc_typehints = "none"  # the numpydoc docstrings carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- intersphinx: only used when the inventories are reachable; the build never needs them --
intersphinx_mapping = {}
intersphinx_disabled_reftypes = ["*"]

# -- sphinx-gallery ------------------------------------------------------------------------
# Only the examples whose names start with ``plot_`` run during the build: each takes a few
# seconds on the tiny test backbone. The others (modAL loop, paper protocol) are shown with
# their code; tests/test_examples.py runs every one of them.
sphinx_gallery_conf = {
    "examples_dirs": [os.path.relpath(EXAMPLES, HERE)],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|/_",
    "plot_gallery": os.environ.get("SKPEAL_DOCS_PLOT_GALLERY", "True"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reference_url": {"skpeal": None},
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("skpeal",),
    "matplotlib_animations": False,
    "show_memory": False,
    "abort_on_example_error": True,
}

# -- HTML ----------------------------------------------------------------------------------
try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_prev_next": False,
        "secondary_sidebar_items": ["page-toc"],
    }
except ImportError:  # the docs extra does not require it
    html_theme = "alabaster"
    html_theme_options = {}
html_title = f"skpeal {release}"
html_static_path = []
html_show_sourcelink = False


# -- inherited scikit-learn docstrings -------------------------------------------------------
# Methods inherited from scikit-learn (``score``, ``get_metadata_routing``) refer to labels of
# scikit-learn's own documentation, which is not reachable offline. Those references, and
# only those, are rendered as plain text instead of failing the ``-W`` build.
_SKLEARN_LABELS = {"accuracy_score", "metadata_routing", "meta-estimator", "glossary"}


def _sklearn_reference(app, env, node, contnode):
    if node.get("reftarget") in _SKLEARN_LABELS:
        return contnode  # resolved as its plain text
    return None  # let Sphinx resolve or warn as usual


def setup(app):
    app.connect("missing-reference", _sklearn_reference)
