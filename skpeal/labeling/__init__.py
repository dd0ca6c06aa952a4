"""Label your own images, and work with labelling tools.

* :mod:`skpeal.labeling.labelstudio`: Label Studio interop (task export, label import,
  the ML backend protocol; the server part needs the ``label`` extra).
"""

__all__ = []
