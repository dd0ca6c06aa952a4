"""Every script in examples/ runs to the end and prints what it promises.

Each example runs in its own process (as a user would run it), offline, with a
non-interactive matplotlib backend and a time limit. The checks on the output are the
lines a reader of the example relies on; an example missing from ``EXPECTED`` must at
least print something.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TIMEOUT = 600  # seconds per example; they take seconds to a minute on 2 busy cores

#: Regular expressions that an example's standard output must match.
EXPECTED = {
    "plot_fit_predict.py": [r"prompt: accuracy 0\.\d+", r"lora: accuracy 0\.\d+"],
    "modal_loop.py": [r"round 0:\s+10 labels", r"round 7:\s+80 labels", r"s for 7 rounds"],
    "plot_grid_search_calibration.py": [
        r"calibration_weight=0\.0: accuracy [01]\.\d+, ECE [01]\.\d+",
        r"calibration_weight=3\.0: accuracy",
        r"best by accuracy: \{'calibration_weight': ",
    ],
    "plot_zero_shot_cold_start.py": [
        r"zero-shot: 1347 pool images scored over 10 classes",
        r"first batch: \[(\d+, ){9}\d+\]",
        r"test accuracy after round 0: [01]\.\d+",
    ],
    "plot_save_load_adapter.py": [
        r"joblib file: [\d.]+ KiB; same probabilities: True",
        r"adapter file: [\d.]+ KiB \(\d+ parameters\); same probabilities: True",
        r"classes from the file: \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]",
        r"mismatch detected: .*n_ctx",
    ],
    "plot_paper_protocol.py": [
        r"calibrated-entropy\s+3\s+16\s",  # last round of the last strategy: 4 x 4 labels
        r"\| entropy \| 1 \| 4 \| 16 \|",  # the summary table
        r"learning_curves\.png",
    ],
    "plot_extending_skpeal.py": [
        r"'small-clip' is a known backbone: True",
        r"ratio sampling picks \[(\d+, ){4}\d+\]",
        r"after one modAL round: 30 labels",
    ],
}


def _run(path, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,  # anything an example writes lands in a temporary folder
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_there_are_examples():
    names = {p.name for p in EXAMPLES}
    assert set(EXPECTED) <= names, (
        f"examples listed in EXPECTED are missing: {set(EXPECTED) - names}"
    )


@pytest.mark.slow  # seconds to a minute each; `pytest -m "not slow"` skips them
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    proc = _run(path, tmp_path)
    assert proc.returncode == 0, (
        f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert proc.stdout.strip(), f"{path.name} printed nothing"
    for pattern in EXPECTED.get(path.name, []):
        assert re.search(pattern, proc.stdout), (
            f"{path.name}: no output line matches {pattern!r}; output:\n{proc.stdout[-3000:]}"
        )
    assert not list(tmp_path.iterdir()), f"{path.name} left files in its working folder"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_has_a_gallery_header(path):
    """sphinx-gallery needs a docstring that opens with a title and a long enough underline."""
    doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    assert doc, f"{path.name} has no module docstring"
    lines = doc.strip("\n").splitlines()
    assert len(lines) >= 3, f"{path.name}: the docstring needs a title, an underline and text"
    title, underline = lines[0], lines[1]
    assert title.strip() and set(underline) == {"="}, f"{path.name}: no '=' underlined title"
    assert len(underline) >= len(title), f"{path.name}: title underline shorter than the title"
