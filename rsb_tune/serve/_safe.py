"""What keeps the server's machine out of its pages, and who may read them.

- :func:`scrub`: a study's own text (its command line, config values such as ``data_path``, a
  trial's error message) names paths of the machine that ran it, which is often the server's.
  Every string that leaves the server passes through it: an absolute path keeps only its last
  component (``/home/ana/data/imagenette`` -> ``…/imagenette``).
- :class:`TokenCheck`: the token of a server bound to a non-local host, compared in constant
  time (``hmac.compare_digest``); passed as ``Authorization: Bearer TOKEN``, or once as
  ``?token=TOKEN`` (the server then sets a cookie and drops it from the address).
- :func:`is_local`: the hosts that need no token.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import re
from typing import Any

__all__ = ["scrub", "scrub_text", "is_local", "TokenCheck", "TOKEN_ENV", "COOKIE"]

TOKEN_ENV = "RSB_TUNE_SERVE_TOKEN"
COOKIE = "rsb_tune_token"

# an absolute POSIX path (not part of a URL: no ':' or '/' or a word character before it) or a
# Windows one; the last component is kept
_PATH_RE = re.compile(r"(?<![\w:/.~-])(?:[A-Za-z]:\\|/)(?:[^\s/\\'\"<>|,;=()\[\]{}]+[/\\])+([^\s/\\'\"<>|,;=()\[\]{}]*)")
_HOME_RE = re.compile(r"(?<![\w/])~/(?:[^\s/'\"<>]+/)*([^\s/'\"<>]*)")


def scrub_text(text: str) -> str:
    """``text`` with every absolute path reduced to ``…/LAST``."""
    text = _PATH_RE.sub(lambda m: f"…/{m.group(1)}", text)
    return _HOME_RE.sub(lambda m: f"…/{m.group(1)}", text)


def scrub(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with :func:`scrub_text` applied to
    every string, keys included, and NaN or infinite numbers as None (valid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def is_local(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (loopback addresses, ``localhost``)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenCheck:
    """Compares a presented token with the server's in constant time."""

    def __init__(self, token: str | None):
        self._token = token.encode() if token else None

    @property
    def required(self) -> bool:
        return self._token is not None

    def ok(self, presented: str | None) -> bool:
        if self._token is None:
            return True
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)
