"""LXD's response envelopes, errors and JSON conventions.

* sync: ``{"type":"sync","status":"Success","status_code":200,...,"metadata":...}``;
* async: HTTP 202, ``Location: /1.0/operations/<id>``, the operation as metadata;
* error: HTTP status equal to ``error_code``, ``{"type":"error","error":...}``.

Times are RFC 3339 in UTC with a ``Z`` (Go rejects offsets-less times); no expiry is
``0001-01-01T00:00:00Z``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

import msgspec
from aiohttp import web

from ..times import ZERO_TIME, parse_rfc3339


class ApiError(Exception):
    """An error answered to the client with an HTTP status and LXD's error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def rfc3339(value: datetime.datetime | None) -> str:
    if value is None:
        return ZERO_TIME
    # msgspec writes RFC 3339 (Z for UTC, no zero microsecond part) five times faster than
    # isoformat, which counts in large listings.
    return msgspec.json.encode(value.astimezone(datetime.UTC))[1:-1].decode()


def parse_time(value: object, field: str) -> datetime.datetime | None:
    """An RFC 3339 time from a request; None for null, empty or the zero time."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be an RFC 3339 time")
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise ApiError(400, f"{field} is not an RFC 3339 time: {value!r}") from None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _encode(value: Any) -> bytes:
    # msgspec encodes large listings (10,000 volumes) several times faster than json.
    return msgspec.json.encode(value)


def etag(*parts: Any) -> str:
    return hashlib.sha256(_dumps(parts).encode()).hexdigest()


def _sync_body(metadata: Any) -> dict[str, Any]:
    return {
        "type": "sync",
        "status": "Success",
        "status_code": 200,
        "operation": "",
        "error_code": 0,
        "error": "",
        "metadata": metadata,
    }


_EMPTY = _encode(_sync_body({}))  # the answer of most changes, made once


def sync(
    metadata: Any = None,
    *,
    status: int = 200,
    etag_value: str | None = None,
    location: str | None = None,
) -> web.Response:
    body = _sync_body(metadata)
    headers = {}
    if etag_value is not None:
        headers["ETag"] = f'"{etag_value}"'
    if location is not None:
        headers["Location"] = location
    return web.Response(
        body=_encode(body), status=status, content_type="application/json", headers=headers
    )


def empty() -> web.Response:
    return web.Response(body=_EMPTY, content_type="application/json")


def created(location: str) -> web.Response:
    return sync(None, status=201, location=location)


def async_response(operation: dict[str, Any]) -> web.Response:
    url = f"/1.0/operations/{operation['id']}"
    body = {
        "type": "async",
        "status": "Operation created",
        "status_code": 100,
        "operation": url,
        "error_code": 0,
        "error": "",
        "metadata": operation,
    }
    return web.Response(
        body=_encode(body), status=202, content_type="application/json", headers={"Location": url}
    )


def error(status: int, message: str) -> web.Response:
    body = {
        "type": "error",
        "status": "",
        "status_code": 0,
        "operation": "",
        "error_code": status,
        "error": message,
        "metadata": None,
    }
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def check_etag(request: web.Request, current: str) -> None:
    """412 when the request's If-Match names another state than ``current``."""
    wanted = request.headers.get("If-Match")
    if wanted and wanted.strip().strip('"') != current:
        raise ApiError(412, "ETag doesn't match: " + wanted)


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise ApiError(400, "request body is not valid JSON (UTF-8)") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "request body must be a JSON object")
    return doc
