"""Routes open without a token: the health check, and logging in and out."""

from __future__ import annotations

from typing import Final

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from dashboard.access_log import WHO
from dashboard.context import reports, tokens

public = Blueprint("public", __name__)

COOKIE: Final = "faceaudit_token"
COOKIE_MAX_AGE: Final = 12 * 3600


@public.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 while the store answers; no token needed, nothing about the data shown."""
    try:
        healthy = reports().healthy()
    except Exception:  # any store failure means unhealthy; the reason goes to the server log
        healthy = False
    return ({"status": "ok"}, 200) if healthy else ({"status": "store unavailable"}, 503)


@public.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Exchange a token (form field, or ``?token=``) for an HttpOnly cookie holding it.

    The cookie is checked against the token file on every request, like a
    bearer token, so deleting the token's line logs the browser out too.
    """
    token = (request.form.get("token") or request.args.get("token") or "").strip()
    target = _local_path(request.values.get("next"))
    if not token:
        return render_template("login.html", next=target)
    holder = tokens().lookup(token)
    if holder is None:
        return render_template("login.html", next=target, error="unknown token"), 401
    request.environ[WHO] = holder.name
    response = redirect(target or url_for("pages.overview"))
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        secure=request.is_secure,
        samesite="Lax",
    )
    return response


@public.get("/logout")
def logout() -> ResponseReturnValue:
    response = redirect(url_for("public.login"))
    response.delete_cookie(COOKIE)
    return response


def _local_path(target: str | None) -> str | None:
    """``target`` if it is a path on this server, so a login link cannot redirect elsewhere."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return None
