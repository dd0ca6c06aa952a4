"""Give Label Studio's ML-backend webhook the basic-auth header, through its REST API.

Label Studio (1.23) registers ``<Backend URL>/webhook`` for a connected model without any
header, so a backend behind basic auth refuses every annotation (401) while Label Studio
tells the annotator all is well. This module finds the project's webhooks that end in
``/webhook`` and sets their ``Authorization`` header (``PATCH /api/webhooks/<id>/``),
authenticated with the token Label Studio itself sends in ``/setup``. Standard library
only.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from base64 import b64encode

__all__ = ["fix_webhook_auth"]

_log = logging.getLogger("skpeal.labeling.labelstudio")


def _call(method, url, token, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (http(s) only)
        return json.loads(r.read() or b"null")


def fix_webhook_auth(setup, basic_auth, wait=60.0, poll=1.0):
    """Set ``Authorization: Basic ...`` on the project's ``.../webhook`` webhooks.

    Parameters
    ----------
    setup : dict
        Label Studio's ``/setup`` body: ``hostname``, ``access_token``, ``project``.
    basic_auth : tuple of (str, str)
        The backend's user and password.
    wait : float, default=60
        Keep looking this long for the webhook (Label Studio creates it after ``/setup``).
    poll : float, default=1
        Seconds between looks.

    Returns
    -------
    fixed : list of int
        The ids of the webhooks now carrying the header (empty on failure, logged).
    """
    header = "Basic " + b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
    host = str(setup.get("hostname") or "").rstrip("/")
    token = setup.get("access_token")
    project = str(setup.get("project") or "").split(".", 1)[0]
    by_hand = ("in Label Studio open Settings -> Webhooks, edit the webhook ending in "
               "/webhook and add the header Authorization with the value "
               f"'Basic {b64encode(f'{basic_auth[0]}:<password>'.encode()).decode()}' "
               "(the base64 of skpeal:<access token>)")
    if not host.startswith(("http://", "https://")) or not token or not project.isdigit():
        _log.warning("cannot give Label Studio's webhook the basic-auth header (its /setup "
                     "sent no hostname, token or project; start Label Studio with "
                     "LABEL_STUDIO_HOST=<its URL>): %s", by_hand)
        return []
    deadline, last = time.monotonic() + wait, None
    while True:
        try:
            hooks = _call("GET", f"{host}/api/webhooks/?project={project}", token) or []
            ours = [h for h in hooks if isinstance(h, dict)
                    and str(h.get("url", "")).rstrip("/").endswith("/webhook")
                    and str(h.get("project")) == project]
            fixed = []
            for h in ours:
                headers = dict(h.get("headers") or {})
                if headers.get("Authorization") != header:
                    headers["Authorization"] = header
                    _call("PATCH", f"{host}/api/webhooks/{h['id']}/", token,
                          {"headers": headers})
                fixed.append(h["id"])
            if fixed:
                _log.info("Label Studio webhook(s) %s now send basic auth", fixed)
                return fixed
            last = "no webhook ending in /webhook in the project yet"
        except (OSError, ValueError, KeyError) as exc:  # URLError/HTTPError are OSErrors
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            _log.warning("could not give Label Studio's webhook the basic-auth header at %s "
                         "(%s); annotations will be refused (401) until you do it: %s",
                         host, last, by_hand)
            return []
        time.sleep(poll)
