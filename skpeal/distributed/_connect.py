"""Reaching Ray: a clear error when it is not installed or when no cluster answers."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

__all__ = ["check_address", "import_ray"]

#: Ray's default ports: the GCS (``ray start --head``) and the Ray Client server.
_DEFAULT_PORTS = {"ray": 10001, "": 6379}


def import_ray():
    """``import ray``, or a RuntimeError naming the command that installs it."""
    try:
        import ray  # optional dependency (skpeal[ray])
    except ImportError as exc:
        raise RuntimeError(
            f"Ray is not installed ({exc.name or 'ray'} is missing): "
            "pip install 'skpeal[ray]' (or run without --ray)"
        ) from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Refuse a cluster address where nothing listens, within ``timeout`` seconds.

    ``"auto"`` and ``"local"`` are left to Ray; ``host:port`` and ``ray://host:port``
    must accept a TCP connection (Ray itself would retry for minutes).
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"Ray address must be 'local', 'auto' or host:port, got {address!r}")
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else "//" + address)
    scheme = parts.scheme if "://" in address else ""
    if scheme not in ("", "ray"):
        raise ValueError(f"Ray address {address!r}: use host:port or ray://host:port")
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:  # a port that is not a number or out of range
        raise ValueError(f"Ray address {address!r}: {exc}") from None
    if not host:
        raise ValueError(f"Ray address {address!r} names no host")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RuntimeError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one "
            "there with 'ray start --head', check the address, or use --ray local"
        ) from None
