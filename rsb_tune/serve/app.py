"""The study browser: a read-only Starlette application over one storage.

Pages (Jinja2 templates) and a JSON API with the same content::

    /                          every study, newest first (?kind=seeds|grid)
    /studies/NAME              one study (a fine-tune: its source and transfer table; a source: its
                               fine-tunes); its live part is re-fetched by /static/app.js
    /studies/NAME/live         that live part alone (204 when unchanged since ?v=VERSION)
    /studies/NAME/figures/F    a figure drawn by analysis (cached until the tables change)
    /studies/NAME/report/      the report of `rsb-tune report`, drawn into the server's cache
    /studies/NAME/files/T      trials.parquet or epochs.parquet, less what names the server's machine
    /compare?a=NAME&b=NAME     what `rsb-tune compare` says
    /api/studies[/NAME[/trials|/epochs]], /api/compare?a=&b=

Only GET and HEAD; study names are looked up in the storage's listing; an unknown study is a
404 page, a bad query a 400, and an unexpected failure a 500 page without a traceback.

Every page and JSON answer of a study is made once per version of the study (its signature:
the mtimes and sizes of its files, see :mod:`rsb_tune.serve._studies`) and served from that
cache while nothing changes, with an ETag: a request that sends it back gets a 304.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from analysis import contract as C
from rsb_tune.serve._figures import Figures
from rsb_tune.serve._safe import COOKIE, TOKEN_ENV, TokenCheck
from rsb_tune.serve._studies import TABLES, Storage

__all__ = ["create_app", "POLL_S"]

POLL_S = 2  # how often an open page asks whether its study changed (the issue: at most every 5 s)
_HERE = Path(__file__).resolve().parent
_KINDS = C.KINDS
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
_REPORT_CSP = "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; object-src 'none'; frame-ancestors 'none'"
log = logging.getLogger("rsb_tune.serve")


def create_app(storage: str, token: str | None = None, *, redraw_s: float | None = None) -> Starlette:
    """The application serving the studies of ``storage`` (a directory or an object-store URI);
    with ``token``, every request must present it."""
    store = Storage(storage)
    figures = Figures(**({} if redraw_s is None else {"redraw_s": redraw_s}))
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_HERE / "templates")), autoescape=True)
    env.filters["num"] = _fmt_num
    env.filters["dur"] = _fmt_duration
    env.filters["sig"] = _fmt_sig
    tokens = TokenCheck(token)
    rendered = _Rendered()

    def render(template: str, **context: Any) -> str:
        return env.get_template(template).render(poll_s=POLL_S, **context)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(render(template, **context), status_code=status)

    def cached(request: Request, key: tuple, make, media_type: str = "text/html; charset=utf-8") -> Response:
        """The body ``make()`` returns (text or bytes), made once per ``key``, which must name
        everything it shows; its ETag is the key's digest, and a request that sends it back
        (If-None-Match) is answered 304 without a body."""
        etag = f'"{_digest(key)}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        body = rendered.get(key, lambda: _encode(make()))
        return Response(body, media_type=media_type, headers=headers)

    def study_or_404(request: Request):
        ref = store.find(request.path_params["name"])
        if ref is None:
            raise HTTPException(404, "no such study in this storage")
        return ref

    def query(request: Request, key: str, allowed: tuple[str, ...] | None = None) -> str | None:
        values = request.query_params.getlist(key)
        if len(values) > 1:
            raise HTTPException(400, f"{key} given {len(values)} times")
        value = values[0] if values else None
        if value is not None and allowed is not None and value not in allowed:
            raise HTTPException(400, f"{key} must be one of {', '.join(allowed)}")
        return value

    # ---------------------------------------------------------------- data
    def studies(kind: str | None) -> list[dict[str, Any]]:
        out = [store.summary(ref) for ref in store.refs().values()]
        out = [s for s in out if kind is None or s["kind"] == kind]
        return sorted(out, key=lambda s: (s.get("started_at") or "", s["name"]), reverse=True)

    def study_view(ref) -> tuple[dict[str, Any], tuple]:
        """What a study's page shows, with its version (a digest of everything in it but the
        ETA), and the study's signature: the files are listed once per request."""
        sig = store.signature(ref)
        summary = {**store.summary(ref, sig), "finetunes": store.finetunes_of(ref.name)}
        if summary["finetune_from"]:  # its source: a link while it is in this storage's listing
            summary["finetune_from"] = {**summary["finetune_from"], "listed": store.find(summary["finetune_from"]["study"]) is not None}
        figs = figures.study(ref.name, ref.dir, store.table_signature(ref, sig), running=summary["state"] == "running", has_tables=summary["has_tables"])
        version = _digest((sig, figs["version"], figs["status"], summary["state"], summary["finetunes"], summary["finetune_from"]))
        return {"study": summary, "figures": figs, "version": version}, sig

    def study_parts(ref, sig: tuple) -> dict[str, Any]:
        return {"trials": store.trial_rows(ref, sig), "tables": [t for t in TABLES if store.table_path(ref, t)]}

    def compare_view(request: Request) -> dict[str, Any]:
        a, b = query(request, "a"), query(request, "b")
        if not a or not b:
            raise HTTPException(400, "name two studies: /compare?a=NAME&b=NAME")
        refs = [store.find(n) for n in (a, b)]
        missing = [n for n, r in zip((a, b), refs) if r is None]
        if missing:
            raise HTTPException(404, "no such study in this storage")
        sums = [store.summary(r) for r in refs]
        running = any(s["state"] == "running" for s in sums)
        ok = all(s["has_tables"] for s in sums)
        figs = figures.compare(*[(r.name, r.dir, store.table_signature(r)) for r in refs], running=running) if ok else {"status": "none", "figures": [], "summary": {}, "error": "a study has no finished trial yet", "version": None}
        return {"a": sums[0], "b": sums[1], "figures": figs}

    # ---------------------------------------------------------------- pages
    def index(request: Request) -> Response:
        kind = query(request, "kind", _KINDS)
        rows = studies(kind)
        template = "_index_rows.html" if query(request, "fragment") is not None else "index.html"
        return cached(request, (template, kind, _listing_key(rows)), lambda: render(template, studies=rows, kind=kind, kinds=_KINDS))

    def study_page(request: Request) -> Response:
        ref = study_or_404(request)
        view, sig = study_view(ref)
        return cached(request, ("study.html", ref.name, view["version"]), lambda: render("study.html", **view, **study_parts(ref, sig)))

    def study_live(request: Request) -> Response:
        ref = study_or_404(request)
        view, sig = study_view(ref)
        if query(request, "v") == view["version"]:
            return Response(status_code=204, headers={"X-Version": view["version"]})
        response = cached(request, ("_study_live.html", ref.name, view["version"]), lambda: render("_study_live.html", **view, **study_parts(ref, sig)))
        response.headers["X-Version"] = view["version"]
        response.headers["X-State"] = view["study"]["state"] if view["figures"]["status"] != "drawing" else "drawing"
        return response

    def study_figure(request: Request) -> Response:
        ref = study_or_404(request)
        path = figures.file(f"study:{ref.name}", request.path_params["file"])
        if path is None:
            raise HTTPException(404, "no such figure (it may be redrawn: reload the page)")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    def study_report(request: Request) -> Response:
        ref = study_or_404(request)
        filename = request.path_params.get("file") or "index.html"
        view, _ = study_view(ref)
        path = figures.file(f"study:{ref.name}", filename)
        if path is None:
            if filename == "index.html" and view["figures"]["status"] in ("drawing", "none"):
                return page(request, "error.html", 503, code=503, message="the report is being drawn; try again in a few seconds", name=ref.name)
            raise HTTPException(404, "no such file in the report")
        response = FileResponse(path)
        response.headers["Content-Security-Policy"] = _REPORT_CSP
        return response

    def study_report_zip(request: Request) -> Response:
        ref = study_or_404(request)
        view, _ = study_view(ref)
        files = figures.files(f"study:{ref.name}")
        if not files:
            raise HTTPException(404, "the report is not drawn yet" if view["figures"]["status"] != "ready" else "this study has no report")
        data = rendered.get(("report.zip", ref.name, view["figures"]["version"]), lambda: _zip(files, f"{ref.name}-report"))
        return Response(data, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{ref.name}-report.zip"'})

    def study_table(request: Request) -> Response:
        ref, filename = study_or_404(request), request.path_params["file"]
        if store.table_path(ref, filename) is None:
            raise HTTPException(404, "no such table (the tables appear when the first trial ends)")

        def table() -> bytes:
            data = store.served_table(ref, filename)
            if data is None:
                raise HTTPException(404, "this table cannot be read")
            return data

        response = cached(request, (filename, ref.name, _digest(store.table_signature(ref))), table, "application/vnd.apache.parquet")
        response.headers["Content-Disposition"] = f'attachment; filename="{ref.name}-{filename}"'
        return response

    def compare_page(request: Request) -> Response:
        if not request.query_params:
            return page(request, "compare_choose.html", names=[s["name"] for s in studies(None)])
        view = compare_view(request)
        if query(request, "fragment") is not None:
            response = page(request, "_compare_live.html", **view)
            response.headers["X-State"] = view["figures"]["status"]
            return response
        return page(request, "compare.html", **view)

    def compare_figure(request: Request) -> Response:
        a, b = store.find(request.path_params["a"]), store.find(request.path_params["b"])
        path = figures.file(f"compare:{a.name}:{b.name}", request.path_params["file"]) if a and b else None
        if path is None:
            raise HTTPException(404, "no such figure")
        return FileResponse(path)

    # ---------------------------------------------------------------- API
    def api_studies(request: Request) -> Response:
        kind = query(request, "kind", _KINDS)
        rows = studies(kind)
        return cached(request, ("api_studies", kind, _listing_key(rows)), lambda: _json({"studies": rows}), "application/json")

    def api_study(request: Request) -> Response:
        view, _ = study_view(study_or_404(request))
        name = view["study"]["name"]

        def body() -> str:
            figs = view["figures"]
            figs = {"status": figs["status"], "error": figs["error"], "summary": figs["summary"], "figures": {f: f"/studies/{name}/figures/{f}.png" for f in figs["figures"]}}
            return _json({**view["study"], "figures": figs, "version": view["version"], "links": _links(name)})

        return cached(request, ("api_study", name, view["version"]), body, "application/json")

    def api_rows(what: str, rows) -> Response:
        def body(request: Request) -> Response:
            ref = study_or_404(request)
            sig = store.signature(ref)
            return cached(request, (what, ref.name, _digest(sig)), lambda: _json({what: rows(ref, sig)}), "application/json")

        return body

    api_trials = api_rows("trials", store.trial_rows)
    api_epochs = api_rows("epochs", store.epoch_rows)

    def api_compare(request: Request) -> Response:
        view = compare_view(request)
        figs = view["figures"]
        return JSONResponse({"a": view["a"], "b": view["b"], "status": figs["status"], "error": figs["error"], "comparison": figs["summary"]})

    def token_page(request: Request) -> Response:
        return page(request, "token.html", 401, env=TOKEN_ENV)

    # ---------------------------------------------------------------- errors
    def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail, "status": exc.status_code}, status_code=exc.status_code)
        return page(request, "error.html", exc.status_code, code=exc.status_code, message=exc.detail)

    def server_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "internal error", "status": 500}, status_code=500)
        return HTMLResponse("<!DOCTYPE html><title>500</title><h1>500: internal error</h1><p>The server log says more.</p>", status_code=500)

    routes = [
        Route("/", index),
        Route("/studies/{name}", study_page),
        Route("/studies/{name}/live", study_live),
        Route("/studies/{name}/figures/{file}", study_figure),
        Route("/studies/{name}/report/", study_report),
        Route("/studies/{name}/report/{file}", study_report),
        Route("/studies/{name}/files/{file}", study_table),
        Route("/studies/{name}/report.zip", study_report_zip),
        Route("/compare", compare_page),
        Route("/compare/{a}/{b}/{file}", compare_figure),
        Route("/api/studies", api_studies),
        Route("/api/studies/{name}", api_study),
        Route("/api/studies/{name}/trials", api_trials),
        Route("/api/studies/{name}/epochs", api_epochs),
        Route("/api/compare", api_compare),
        Route("/token", token_page),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, tokens=tokens)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=_closing(figures),
    )
    app.state.storage, app.state.figures = store, figures
    return app


class _Rendered:
    """The last ``size`` rendered bodies, by a key that names everything they show."""

    def __init__(self, size: int = 256):
        self.size = size
        self._items: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, render) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        text = render()
        with self._lock:
            self._items[key] = text
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return text


def _digest(value: Any) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()[:20]


def _listing_key(rows: list[dict[str, Any]]) -> str:
    """A key of the study cards listed; the ETA moves with the clock and, as on a study's page,
    is the one of the first answer until the study changes."""
    return _digest([{k: v for k, v in row.items() if k != "eta_s"} for row in rows])


def _encode(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak or strong) or is ``*``."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags or "*" in tags


def _zip(files: list[Path], folder: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in files:
            z.write(path, f"{folder}/{path.name}")
    return buf.getvalue()


def _closing(figures: Figures):
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            figures.close()

    return lifespan


def _links(name: str) -> dict[str, str]:
    return {
        "page": f"/studies/{name}",
        "report": f"/studies/{name}/report/",
        "report.zip": f"/studies/{name}/report.zip",
        **{t: f"/studies/{name}/files/{t}" for t in TABLES},
        "trials": f"/api/studies/{name}/trials",
        "epochs": f"/api/studies/{name}/epochs",
    }


class _Guard:
    """Read-only (GET and HEAD), the token when one is set, and the security headers."""

    def __init__(self, app, tokens: TokenCheck):
        self.app, self.tokens = app, tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"] or []
                have = {k.lower() for k, _ in message.get("headers", [])}
                csp = next((v for k, v in message.get("headers", []) if k.lower() == b"content-security-policy"), _CSP.encode())
                headers += [(b"content-security-policy", csp), (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
                if b"cache-control" not in have:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            response = JSONResponse({"error": "read-only: only GET and HEAD", "status": 405}, status_code=405, headers={"Allow": "GET, HEAD"})
            return await response(scope, receive, send_with_headers)
        if self.tokens.required and not request.url.path.startswith(("/static/", "/token")):
            auth = request.headers.get("authorization", "")
            bearer = auth[7:] if auth.lower().startswith("bearer ") else None
            in_query = request.query_params.get("token")
            if in_query is not None and self.tokens.ok(in_query):  # once: a cookie, and the token off the address
                kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                # the path alone, relative to this server: "//evil.example/" would leave it
                target = "/" + request.url.path.lstrip("/\\") + ("?" + "&".join(f"{k}={v}" for k, v in kept) if kept else "")
                response = RedirectResponse(_quote_target(target), status_code=303)
                response.set_cookie(COOKIE, in_query, httponly=True, samesite="strict", secure=request.url.scheme == "https")
                return await response(scope, receive, send_with_headers)
            if not (self.tokens.ok(bearer) or self.tokens.ok(request.cookies.get(COOKIE))):
                if request.url.path.startswith("/api/"):
                    response = JSONResponse({"error": "a token is required: send the header 'Authorization: Bearer TOKEN'", "status": 401}, status_code=401)
                else:
                    response = RedirectResponse("/token", status_code=303)
                return await response(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)


def _quote_target(target: str) -> str:
    from urllib.parse import quote

    return quote(target, safe="/?&=")


def _fmt_num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, (int, float)):
        if value != value:
            return "–"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


def _fmt_sig(value: Any) -> str:
    """A number with 4 significant digits (hyperparameters such as 2e-3 stay readable)."""
    if isinstance(value, float):
        return "–" if value != value else f"{value:.4g}"
    return _fmt_num(value)


def _fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds != seconds:
        return "–"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"

