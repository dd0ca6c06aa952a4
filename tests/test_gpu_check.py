"""The GPU check's dry run: ``benchmarks/gpu_check.sh --cpu`` end to end on the tiny model.

The device check (issue 25) runs in one call of a GPU machine that is lent rarely; this
runs the same script on the CPU so that a typo cannot waste that call.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
PARTS = [
    "scoring: bare encode_image (preprocessing + forward)",
    "scoring: bare encode_image, input already on the device",
    "scoring: predict_proba, prompt",
    "scoring: predict_proba, prompt, feature_cache=False",
    "scoring: predict_proba, LoRA (both towers, merged)",
    "scoring: pool fingerprints alone (feature-cache keys, CPU)",
    "training step: prompt",
    "training step: lora",
    "training step: prompt+lora",
]


def _run(*args, out, timeout=600):
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, HF_HUB_OFFLINE="1")
    env.pop("SKPEAL_GPU_DRY_RUN", None)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow  # about 55 s of CPU time (a minute on 2 lightly loaded cores)
def test_cpu_dry_run_of_the_gpu_check(tmp_path):
    r = _run("--cpu", out=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["env.txt", "gpu_check.json", "gpu_check.log", "gpu_check.md",
                     "pytest_gpu.log"]
    assert len(files) <= 8  # what the device tool returns from $OUT
    # the CUDA tests ran their bodies on the CPU (not all skipped)
    summary = (tmp_path / "pytest_gpu.log").read_text().strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed", summary), summary
    assert not re.search(r"failed|error", summary), summary
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [r["part"] for r in result["rows"]] == PARTS
    assert all(r["value"] != "FAILED" for r in result["rows"])
    assert result["machine"]["device"] == "cpu"
    assert result["args"]["cpu"] is True and result["args"]["model"] == "skpeal-tiny"
    md = (tmp_path / "gpu_check.md").read_text()
    assert all(part in md for part in PARTS)
    assert "torch " + torch.__version__ in md


def test_gpu_check_refuses_unknown_arguments(tmp_path):
    r = _run("--gpu", out=tmp_path, timeout=60)
    assert r.returncode == 64
    assert "unknown argument --gpu" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without CUDA")
def test_measurements_need_cuda_or_cpu_flag(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "--cpu" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
