"""The gateway's HTTP interface: ``POST /v1/events`` and ``GET /healthz``.

A request is taken whole or not at all: if any record is refused, none is
produced and the answer (400) names each refused record by its index and
why. 202 comes only after the broker acknowledged every record, with where
each one went; a 503 means the broker did not take them all, and the device
sends the request again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from producers.gateway.devices import Device, DeviceTokens
from producers.gateway.limiter import RateLimiter
from producers.gateway.records import BodyError, Message, parse
from producers.gateway.relay import Receipt, RelayError


class Relay(Protocol):
    def send(self, device: Device, messages: list[Message]) -> list[Receipt]: ...


@dataclass(frozen=True)
class Limits:
    max_records: int = 1000
    max_message_bytes: int = 1024 * 1024
    max_body_bytes: int = 8 * 1024 * 1024


def create_gateway_app(
    relay: Relay, devices: DeviceTokens, limiter: RateLimiter, limits: Limits = Limits()
) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = limits.max_body_bytes

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.post("/v1/events")
    def events() -> Any:
        device = _device(devices)
        if device is None:
            return _error(401, "a valid device token is required", WWW_Authenticate="Bearer")
        wait = limiter.admit(device.device_id)
        if wait:
            retry = str(math.ceil(wait))
            return _error(429, "too many requests from this device", Retry_After=retry)
        try:
            messages, refused = parse(
                request.get_data(),
                request.content_type or "",
                device,
                max_records=limits.max_records,
                max_message_bytes=limits.max_message_bytes,
            )
        except BodyError as exc:
            return _error(exc.status, str(exc))
        if refused:
            body = {
                "error": "Bad Request",
                "message": f"{len(refused)} of {len(messages) + len(refused)} records refused; "
                "none was sent",
                "refused": [r.to_json() for r in refused],
            }
            return body, 400
        try:
            receipts = relay.send(device, messages)
        except RelayError as exc:
            return _error(503, f"{exc}; send the request again", Retry_After="1")
        return {"accepted": len(receipts), "records": [r.to_json() for r in receipts]}, 202

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error(exc.code or 500, exc.description or exc.name)

    return app


def _device(devices: DeviceTokens) -> Device | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return devices.lookup(token.strip())


def _error(status: int, message: str, **headers: str) -> Any:
    names = {
        400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
        413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
        503: "Service Unavailable",
    }  # fmt: skip
    body = {"error": names.get(status, "Error"), "message": message}
    return body, status, {name.replace("_", "-"): value for name, value in headers.items()}
