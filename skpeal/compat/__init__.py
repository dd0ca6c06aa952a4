"""Compatibility layers with other packages (see :mod:`skpeal.compat.modal`)."""
