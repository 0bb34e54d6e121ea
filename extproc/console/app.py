"""The console's routes: HTML pages and the JSON API, both answered by `queries` and `gateway_state`.

Handlers are plain functions: Starlette runs them in its thread pool, so a SQLite read never holds the
event loop. Each thread keeps its own connection to the session store. Pages and API share one rule
for who sees what (`_viewer`): a gateway key holder's queries are always narrowed to their key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..config import Config
from ..observe import sessions as store
from . import charts, conversation, gateway_state, queries
from .auth import COOKIE, CSRF_COOKIE, Guard, Logins, Viewer, allowed_hosts, csrf_ok

_MAX_FORM_BYTES = 4096
_CSS = (os.path.dirname(__file__), "static", "console.css")


class _Unauthorized(Exception):
    """Nobody is logged in: pages redirect to the login form, the API answers 401."""


class _NotFound(Exception):
    """No such session (or not the holder's own): 404, the same either way."""


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "—"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class Console:
    """The app and what it reads: the config, the session store's directory, Envoy's admin address."""

    def __init__(self, cfg: Config, admin_address_file: str | None = None, env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.directory = cfg.recording.dir
        self.admin_address_file = admin_address_file
        self.logins = Logins(cfg, env)
        store.open_db(self.directory).close()  # creates the store, or back-fills an older one's aggregates
        self._local = threading.local()
        self.templates = Environment(loader=PackageLoader("extproc.console", "templates"), autoescape=True)
        self.templates.filters.update(when=_when, usd=_usd, pct=_pct, ms=_ms)
        with open(os.path.join(*_CSS), "rb") as f:
            self.css = f.read()
        routes = [
            Route("/", self.overview_page), Route("/sessions", self.sessions_page),
            Route("/sessions/{session:path}", self.session_page), Route("/spend", self.spend_page),
            Route("/spend.csv", self.spend_csv), Route("/keys", self.keys_page), Route("/routing", self.routing_page),
            Route("/login", self.login_page, methods=["GET"]), Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]), Route("/static/console.css", self.stylesheet),
            Route("/api/overview", self.api_overview), Route("/api/sessions", self.api_sessions),
            Route("/api/sessions/{session:path}", self.api_session), Route("/api/spend", self.api_spend),
            Route("/api/budgets", self.api_budgets),
        ]
        app = Starlette(routes=routes, exception_handlers={
            _Unauthorized: self._unauthorized, queries.BadQuery: self._bad_query, _NotFound: self._not_found,
            404: self._not_found})
        self.app = Guard(app, allowed_hosts(cfg))

    # -- plumbing --------------------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        """This thread's connection to the session store (SQLite connections stay in their thread)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = store.open_db(self.directory, create=False)
        return db

    def _viewer(self, request: Request) -> Viewer:
        viewer = self.logins.viewer(request.cookies)
        if viewer is None:
            raise _Unauthorized
        return viewer

    def _page(self, name: str, request: Request, viewer: Viewer | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            viewer=viewer, path=request.url.path, recording=self.cfg.recording.enabled, **ctx)
        return HTMLResponse(html, status_code=status)

    def _unauthorized(self, request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return _json({"error": "log in first (POST /login with an admin key)"}, 401)
        return RedirectResponse("/login", status_code=303)

    def _bad_query(self, request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return _json({"error": str(exc)}, 400)
        return self._page("error.html", request, self.logins.viewer(request.cookies), 400, message=str(exc))

    def _not_found(self, request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return _json({"error": "not found"}, 404)
        return self._page("error.html", request, self.logins.viewer(request.cookies), 404, message="not found")

    def stylesheet(self, _request: Request) -> Response:
        return Response(self.css, media_type="text/css", headers={"cache-control": "max-age=3600"})

    # -- queries shared by pages and API ------------------------------------------------------------

    def _filter(self, request: Request, viewer: Viewer) -> queries.SessionFilter:
        q = request.query_params
        status = q.get("status") or None
        if status not in (None, "ok", "error"):
            raise queries.BadQuery(f"status={status!r}: give ok or error")
        return queries.SessionFilter(
            provider=q.get("provider") or None, model=q.get("model") or None,
            key=viewer.key or q.get("key") or None, since=queries.parse_since(q.get("since"), time.time()),
            status=status, limit=queries.parse_limit(q.get("limit")), cursor=q.get("cursor") or None)

    def _spend(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        now = time.time()
        group_by = request.query_params.get("group_by") or "key"
        since = queries.parse_since(request.query_params.get("since") or "30d", now)
        return queries.spend(self.db(), group_by, since, now, key=viewer.key)

    def _session(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        found = queries.session_detail(self.db(), request.path_params["session"], key=viewer.key,
                                       offset=queries.parse_offset(request.query_params.get("offset")))
        if found is None:
            raise _NotFound
        self._explain(found["turns"])
        return found

    def _explain(self, records: list[dict[str, Any]]) -> None:
        """Each record's `route`: its reason, and the fallback when a later provider answered."""
        for r in records:
            r["route"] = gateway_state.route_label(self.cfg, r.get("reason"), r.get("model"), r.get("provider"))

    # -- pages -----------------------------------------------------------------------------------

    def overview_page(self, request: Request) -> Response:
        viewer = self._viewer(request)
        window = request.query_params.get("window") or "day"
        data = queries.overview(self.db(), window, key=viewer.key)
        names = {"requests": "Requests by provider", "tokens": "Tokens (in + out) by provider",
                 "cost_usd": "Cost (USD) by provider", "cost_usd_by_key": "Cost (USD) by key",
                 "errors": "Errors by provider"}
        figures = [charts.stacked_bars(data["charts"][m], title, money=m.startswith("cost"))
                   for m, title in names.items()]
        return self._page("overview.html", request, viewer, data=data, figures=figures, window=window)

    def sessions_page(self, request: Request) -> Response:
        viewer = self._viewer(request)
        f = self._filter(request, viewer)
        items, cursor = queries.list_sessions(self.db(), f)
        params = {k: v for k, v in request.query_params.items() if k != "cursor" and v}
        next_url = f"/sessions?{urlencode({**params, 'cursor': cursor})}" if cursor else None
        return self._page("sessions.html", request, viewer, items=items, next_url=next_url, q=params,
                          facets=queries.facets(self.db(), viewer.key))

    def session_page(self, request: Request) -> Response:
        viewer = self._viewer(request)
        data = self._session(request, viewer)
        previous = data["previous_request"]
        for turn in data["turns"]:
            turn["asked"] = conversation.request_parts(turn.get("request"), previous, turn.get("client") or "",
                                                       first=turn is data["turns"][0] and data["offset"] == 0)
            turn["answer"] = conversation.response_parts(turn.get("response"), turn.get("client") or "")
            previous = turn.get("request")
        return self._page("session.html", request, viewer, s=data)

    def spend_page(self, request: Request) -> Response:
        viewer = self._viewer(request)
        data = self._spend(request, viewer)
        chart_by = "provider" if data["group_by"] == "day" else data["group_by"]
        figure = charts.stacked_bars(data["chart"], f"Cost per day by {chart_by}", money=True)
        csv_url = "/spend.csv?" + urlencode({k: v for k, v in request.query_params.items() if v})
        return self._page("spend.html", request, viewer, data=data, figure=figure, csv_url=csv_url,
                          since=request.query_params.get("since") or "30d",
                          budgets=gateway_state.budgets(self.cfg, key=viewer.key))

    def spend_csv(self, request: Request) -> Response:
        viewer = self._viewer(request)
        data = self._spend(request, viewer)
        return Response(queries.spend_csv(data), media_type="text/csv; charset=utf-8", headers={
            "content-disposition": f'attachment; filename="lunaroute-spend-by-{data["group_by"]}.csv"'})

    def keys_page(self, request: Request) -> Response:
        viewer = self._viewer(request)
        if viewer.role == "holder":
            raise _NotFound
        return self._page("keys.html", request, viewer, keys=gateway_state.gateway_keys(self.cfg),
                          usage=queries.key_usage(self.db()), providers=gateway_state.providers(self.cfg),
                          health=gateway_state.provider_health(self.cfg, *self._envoy_admin()))

    def _envoy_admin(self) -> tuple[str | None, str | None]:
        """Envoy's admin: its Unix socket, the address `lunaroute up`'s Envoy wrote (read now: Envoy
        may have started after the console), or the configured port; (None, None) when unknown."""
        address = f"{self.cfg.admin.host}:{self.cfg.admin.port}" if self.cfg.admin.port else None
        if self.admin_address_file:
            with contextlib.suppress(OSError):
                address = Path(self.admin_address_file).read_text(encoding="utf-8").strip() or address
        return self.cfg.admin.socket, address

    def routing_page(self, request: Request) -> Response:
        viewer = self._viewer(request)
        decisions = queries.recent_decisions(self.db(), 50, key=viewer.key)
        self._explain(decisions)
        return self._page("routing.html", request, viewer, routing=gateway_state.routing(self.cfg), decisions=decisions)

    # -- login -----------------------------------------------------------------------------------

    def login_page(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        if self.logins.open:
            return RedirectResponse("/", status_code=303)
        token = request.cookies.get(CSRF_COOKIE) or _random()
        response = self._page("login.html", request, None, status, csrf=token, error=error)
        self._cookie(response, CSRF_COOKIE, token, 3600)
        return response

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        if not csrf_ok(request.cookies.get(CSRF_COOKIE, ""), form.get("csrf")):
            return self.login_page(request, "the form expired; try again", 403)
        found = self.logins.login(form.get("key", "")) if not self.logins.open else None
        if found is None:
            return self.login_page(request, "that key does not open this console", 401)
        response = RedirectResponse("/", status_code=303)
        self._cookie(response, COOKIE, found[0], int(self.logins.ttl_s))
        response.delete_cookie(CSRF_COOKIE)
        return response

    async def logout(self, request: Request) -> Response:
        viewer = self._viewer(request)
        form = await _form(request)
        if not csrf_ok(viewer.csrf, form.get("csrf")):
            return _json({"error": "missing or wrong CSRF token"}, 403)
        self.logins.logout(request.cookies)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                            secure=self.cfg.console.secure_cookies, path="/")

    # -- JSON API --------------------------------------------------------------------------------

    def api_overview(self, request: Request) -> Response:
        viewer = self._viewer(request)
        return _json(queries.overview(self.db(), request.query_params.get("window") or "day", key=viewer.key))

    def api_sessions(self, request: Request) -> Response:
        viewer = self._viewer(request)
        items, cursor = queries.list_sessions(self.db(), self._filter(request, viewer))
        return _json({"sessions": items, "next_cursor": cursor})

    def api_session(self, request: Request) -> Response:
        return _json(self._session(request, self._viewer(request)))

    def api_spend(self, request: Request) -> Response:
        return _json(self._spend(request, self._viewer(request)))

    def api_budgets(self, request: Request) -> Response:
        viewer = self._viewer(request)
        return _json(gateway_state.budgets(self.cfg, key=viewer.key))


def _random() -> str:
    return secrets.token_urlsafe(24)


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (login, logout); anything larger or otherwise encoded is empty."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return {}
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def create_app(cfg: Config, admin_address_file: str | None = None, env: dict[str, str] | None = None) -> Guard:
    """The console as an ASGI app (`lunaroute console` serves it with uvicorn)."""
    return Console(cfg, admin_address_file, env).app

