"""What both web apps of skpeal share: one JSON request reader and request-size guards.

Used by the labelling page (:mod:`skpeal.labeling.app`) and Label Studio's ML backend
(:mod:`skpeal.labeling.labelstudio.backend`). Imports FastAPI/Starlette (the ``label``
extra); import this module only where the web stack is needed.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3

from fastapi import HTTPException
from starlette.responses import JSONResponse

__all__ = ["MAX_DEPTH", "MAX_HEADER_BYTES", "HeaderLimit", "check_id", "disk_full",
           "disk_full_response", "guard", "read_json", "served_path"]

#: Deepest JSON nesting a request body may have (skpeal's bodies need 4 levels; Label
#: Studio's task data a few more).
MAX_DEPTH = 32
#: Largest total size of a request's headers, in bytes (431 beyond it).
MAX_HEADER_BYTES = 16 * 1024
#: Image ids are SQLite integers: anything outside [0, 2**63) names no image.
_MAX_ID = 2**63 - 1


def _bad(status, message, headers=None):
    raise HTTPException(status_code=status, detail=message, headers=headers)


def _depth(value, limit):
    """Nesting depth of a parsed JSON value (iterative: no recursion on hostile input)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


async def read_json(request, max_body, *, max_depth=MAX_DEPTH, allow_no_type=False):
    """The request's body as JSON, or an :class:`~fastapi.HTTPException` saying what is wrong.

    Parameters
    ----------
    request : starlette.requests.Request
    max_body : int
        Largest body in bytes (413 beyond it, checked while reading: a lying or missing
        ``Content-Length`` cannot make the server read more).
    max_depth : int, default=MAX_DEPTH
        Deepest nesting of arrays and objects (400 beyond it).
    allow_no_type : bool, default=False
        Accept a request without ``Content-Type`` (Label Studio's webhooks); any type
        other than ``application/json`` still gets 415.

    Returns
    -------
    value : object
        The parsed JSON.
    """
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";")[0].strip().lower()
    if kind != "application/json" and not (allow_no_type and not kind):
        _bad(415, f"send JSON with Content-Type: application/json (got {ctype or 'none'!r})")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body):
        _bad(413, f"request body too large: {length} bytes, over the {max_body}-byte limit"
             if length.isdigit() else f"bad Content-Length {length[:40]!r}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            _bad(413, f"request body too large: over the {max_body}-byte limit")
    try:
        value = json.loads(body.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of over 4300 digits
        _bad(400, f"the request body is not JSON (malformed JSON: {exc})")
    except RecursionError:
        _bad(400, f"the JSON body is nested deeper than {max_depth} levels")
    if _depth(value, max_depth) > max_depth:
        _bad(400, f"the JSON body is nested deeper than {max_depth} levels")
    return value


def check_id(value, where="image id"):
    """Refuse an id outside SQLite's integer range with 404 before it reaches the database."""
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(422, f"{where} must be an integer, got {value!r}")
    if not 0 <= value <= _MAX_ID:
        shown = str(value) if value.bit_length() < 80 else "of over 20 digits"
        _bad(404, f"unknown {where} {shown} (ids are integers from 0 to {_MAX_ID})")
    return value


def disk_full(exc):
    """True when ``exc`` says the disk is full (an OSError, or SQLite's SQLITE_FULL)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or "disk is full" in str(exc))


def disk_full_response(exc):
    """507 Insufficient Storage, naming what could not be written."""
    return JSONResponse({"detail": f"the disk is full: {exc}. Nothing of this request was "
                                   "saved; free some space and send it again"},
                        status_code=507)


async def _storage_error(request, exc):
    if disk_full(exc):
        return disk_full_response(exc)
    raise exc  # anything else stays a server error (logged with its traceback)


def guard(app, *, max_header_bytes=MAX_HEADER_BYTES):
    """Add the header-size limit (431) and the full-disk answer (507) to a FastAPI app."""
    app.add_middleware(HeaderLimit, max_bytes=max_header_bytes)
    app.add_exception_handler(OSError, _storage_error)
    app.add_exception_handler(sqlite3.Error, _storage_error)
    return app


def served_path(path):
    """``path`` (a registered, already resolved image path) if it still is that file.

    Paths are resolved when images are registered; at request time the path is resolved
    again and must still be the same regular file: a file replaced by a symlink (to
    ``/etc/passwd``...) or a folder on the way replaced by one resolves elsewhere and is
    refused, so nothing outside the registered images is ever served.

    Returns
    -------
    path : str or None
        None when the file is gone or now resolves elsewhere.
    """
    real = os.path.realpath(path)
    if real != os.path.normpath(path) or not os.path.isfile(real):
        return None
    return real


class HeaderLimit:
    """ASGI middleware: answer 431 when a request's headers exceed ``max_bytes`` in total."""

    def __init__(self, app, max_bytes=MAX_HEADER_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
            if size > self.max_bytes:
                response = JSONResponse(
                    {"detail": f"request headers of {size} bytes are over the "
                               f"{self.max_bytes}-byte limit"}, status_code=431)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
