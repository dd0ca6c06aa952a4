"""The version of skpeal (one place, read by the package, the estimator and the build)."""

__version__ = "0.1.0.dev0"
