"""``rsb-tune serve``: a read-only study browser over one storage (see :mod:`rsb_tune.serve.app`).

Heavy imports (Starlette, uvicorn) happen in :func:`serve` and :func:`create_app`'s module,
so importing this package costs nothing.
"""

from __future__ import annotations

import os
import socket

from rsb_tune.errors import UserError
from rsb_tune.serve._safe import TOKEN_ENV

__all__ = ["serve", "check_options", "ServeError", "DEFAULT_HOST", "DEFAULT_PORT", "TOKEN_ENV"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class ServeError(UserError):
    """A bad option of ``rsb-tune serve`` (printed on one line, exit code 2)."""


def check_options(host: str, port: int, token: str | None) -> str | None:
    """The token to require (``--token``, else ``$RSB_TUNE_SERVE_TOKEN``), after checking that a
    non-local ``host`` has one; ServeError otherwise."""
    from rsb_tune.serve._safe import is_local

    token = token or os.environ.get(TOKEN_ENV) or None
    if not 0 <= port <= 65535:
        raise ServeError(f"--port {port}: not a port number (0-65535)")
    if not is_local(host) and not token:
        raise ServeError(
            f"--host {host} makes the studies readable from other machines: pass --token TOKEN or set {TOKEN_ENV} "
            f"(or keep the default --host 127.0.0.1 and use an SSH tunnel)"
        )
    if token is not None and len(token) < 16:
        raise ServeError("the token is too short: use at least 16 characters (python -c 'import secrets; print(secrets.token_urlsafe())')")
    return token


def serve(storage: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None, *, log_level: str = "warning",
          http: str = "auto", loop: str = "auto") -> None:  # fmt: skip
    """Serve the studies of ``storage`` until interrupted. ``http``, ``loop``: uvicorn's HTTP
    stack and event loop ("auto": httptools and uvloop where installed, else h11 and asyncio,
    which the serve extra installs; measured cheaper per request here, benchmarks/RESULTS.md 11)."""
    token = check_options(host, port, token)
    import uvicorn

    from rsb_tune.serve.app import create_app

    app = create_app(storage, token)
    app.state.storage.check()
    try:  # fail here, in one line, when the port is taken
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as e:
        raise ServeError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    bound = sock.getsockname()[1]
    where = app.state.storage.location.display()
    shown = f"[{host}]" if ":" in host else host
    print(f"rsb-tune serve: studies of {where} on http://{shown}:{bound}/" + (" (token required)" if token else ""), flush=True)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, server_header=False, timeout_graceful_shutdown=2, http=http, loop=loop)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
