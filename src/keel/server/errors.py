"""Maps every error to OpenAI's JSON shape `{"error": {"message", "type", "code", "param"}}`, in one place."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from keel.errors import KeelError, RateLimitError
from keel.logs import get_logger
from keel.server.allowed_methods import allowed_methods

log = get_logger(__name__)


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code, "param": param}}


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error response (`error_body`)."""

    error: ErrorDetail


# Declared on every route of the OpenAPI document, so clients know the shape of an error.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "The request was refused (see `error.code`)."},
    413: {"model": ErrorResponse, "description": "The request body is larger than this route accepts."},
    "5XX": {"model": ErrorResponse, "description": "Keel or the model behind it failed."},
}


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    where = ".".join(location)
    message = first.get("msg", "Invalid request.")
    if _is_invalid_json(exc):
        return f"The request body is not valid JSON: {first.get('ctx', {}).get('error', message)}", None
    return (f"{where}: {message}" if where else message), (where or None)


def _is_invalid_json(exc: RequestValidationError) -> bool:
    errors = exc.errors()
    return bool(errors) and errors[0].get("type") == "json_invalid"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KeelError)
    async def keel_error(_: Request, exc: KeelError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return JSONResponse(
            error_body(exc.message, exc.error_type, exc.code, exc.param),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe_validation(exc)
        # A body that is not JSON at all is a bad request (400, as OpenAI answers it); JSON that does
        # not fit the route's model is unprocessable (422).
        if _is_invalid_json(exc):
            return JSONResponse(
                error_body(message, "invalid_request_error", "invalid_json", None), status_code=400
            )
        return JSONResponse(
            error_body(message, "invalid_request_error", "invalid_request", param), status_code=422
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (methods := allowed_methods(request)):
            headers["Allow"] = ", ".join(methods)
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error", code),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return JSONResponse(
            error_body("Internal server error.", "internal_error", "internal_error"), status_code=500
        )
