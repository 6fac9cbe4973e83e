"""The Flask application: routes from ``api``, ``pages`` and ``public``, token checks, errors.

Every route outside ``public`` needs a token: ``Authorization: Bearer TOKEN``,
or the cookie ``/login`` sets. A missing or unknown token is 401; a filter
for a region or processor outside the token's scope is 403; a processor or
violation outside it is 404, as one that does not exist.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

from flask import Flask, current_app, g, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, Unauthorized
from werkzeug.http import HTTP_STATUS_CODES

from dashboard.access_log import WHO, AccessLog
from dashboard.api import api
from dashboard.auth import TokenFile
from dashboard.context import REPORTS, TOKENS, reports, tokens
from dashboard.filters import FilterError
from dashboard.pages import pages
from dashboard.proxy import TrustedProxy
from dashboard.public import COOKIE, login_form, public
from dashboard.queries import Missing, Reports
from dashboard.scope import OutOfScope

REFRESH: Final = "FACEAUDIT_REFRESH_SECONDS"
"""App config: how often the overview page reloads itself (None: never)."""
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class FiniteJSON(DefaultJSONProvider):
    """JSON without ``NaN`` or ``Infinity``, which are not JSON: a device may send a NaN
    score, and one such value would make the whole answer unreadable. They come out null."""

    sort_keys = False  # keep the store's column order (events keep table order)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return super().dumps(_finite(obj), allow_nan=False, **kwargs)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def create_app(
    reports: Reports,
    tokens: TokenFile,
    access_log: logging.Logger,
    trusted_proxy: str | None = None,
    refresh_seconds: int | None = None,
) -> Flask:
    """The dashboard as a WSGI app (``app.wsgi_app`` logs every request to ``access_log``);
    `trusted_proxy`: the address whose X-Forwarded-* headers are believed; with
    `refresh_seconds`, the overview page reloads itself that often (a live store)."""
    app = Flask(__name__)
    app.json = FiniteJSON(app)
    app.config[REFRESH] = refresh_seconds
    app.extensions[REPORTS] = reports
    app.extensions[TOKENS] = tokens
    app.register_blueprint(public)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    app.before_request(_authenticate)
    app.after_request(_secure)
    app.register_error_handler(FilterError, lambda exc: _error(400, str(exc)))
    app.register_error_handler(OutOfScope, lambda exc: _error(403, str(exc)))
    app.register_error_handler(Missing, lambda exc: _error(404, str(exc)))
    app.register_error_handler(HTTPException, lambda exc: _error(exc.code, exc.description))
    app.context_processor(_page_context)
    app.add_template_filter(_number, "num")
    app.add_template_filter(_when, "when")
    app.add_template_filter(_fixed, "fixed")
    app.wsgi_app = TrustedProxy(AccessLog(app.wsgi_app, access_log), trusted_proxy)
    return app


def _authenticate() -> None:
    if request.blueprint == public.name or request.endpoint == "static":
        return
    token = _presented_token()
    holder = tokens().lookup(token) if token else None
    if holder is None:
        raise Unauthorized("a valid token is required")
    g.viewer = holder
    request.environ[WHO] = holder.name


def _presented_token() -> str | None:
    """The bearer token of the Authorization header, else the login cookie."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def _secure(response: Any) -> Any:
    response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _error(code: int | None, message: str | None) -> ResponseReturnValue:
    """JSON under /api/, a page elsewhere; a 401 page is the login form."""
    code = code or 500
    headers = {"WWW-Authenticate": 'Bearer realm="faceaudit"'} if code == 401 else {}
    if request.path.startswith("/api/"):
        body = {"error": HTTP_STATUS_CODES.get(code, "Error"), "message": message}
        return body, code, headers
    if code == 401:
        response = login_form(request.full_path)
        response.status_code = code
        response.headers.update(headers)
        return response
    return render_template("error.html", code=code, message=message), code, headers


def _page_context() -> dict[str, Any]:
    viewer = g.get("viewer")
    return {
        "viewer": viewer,
        "profile": reports().profile,
        "catalogue_version": reports().catalogue.version,
        "unverified_runs": reports().unverified_runs() if viewer else None,
        "refresh_seconds": current_app.config[REFRESH],
    }


NONE: Final = "\N{EN DASH}"
"""How pages show a missing value."""


def _number(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def _fixed(value: float | None) -> str:
    """Two decimals, as the API rounds them."""
    return NONE if value is None else f"{value:.2f}"


def _when(value: str | None) -> str:
    """``2026-03-01T08:00:00.123456Z`` → ``2026-03-01 08:00:00 UTC``."""
    return NONE if value is None else value[:19].replace("T", " ") + " UTC"
