"""The active-learning protocol runner: configuration, rounds, baselines, report, plots.

:class:`ExperimentConfig` defines a run; :func:`run_experiment` runs (or resumes) it and
:func:`write_report` writes its tables and plots; :func:`load_data` gives the pool and
test data a config names. ``skpeal run`` / ``skpeal demo`` are the command-line form.
"""

from .config import STRATEGIES, ExperimentConfig
from .data import load_data
from .report import write_report
from .runner import run_experiment

__all__ = ["STRATEGIES", "ExperimentConfig", "load_data", "run_experiment", "write_report"]
