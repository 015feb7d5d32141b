"""Keel's one exception tree; each error carries the HTTP status and OpenAI-style type it maps to.

KeelError
├── InvalidRequestError        400 invalid_request_error   (the caller sent something unusable)
│   └── UnsupportedError       400                         (valid, but not something Keel does)
├── AuthenticationError        401 authentication_error    (missing, malformed, unknown or revoked key)
├── PermissionDeniedError      403 permission_error        (the key's role may not use this route)
├── NotFoundError              404 not_found_error
│   └── ModelNotFoundError     404 model_not_found
├── ConflictError              409 conflict_error          (the object is busy: a running rollout)
├── PayloadTooLargeError       413 payload_too_large
├── RateLimitError             429 rate_limit_error
├── UpstreamError              502 upstream_error          (a model failed or answered unusably)
└── ServiceUnavailableError    503 service_unavailable     (not ready yet: models still loading)
"""

from __future__ import annotations


class KeelError(Exception):
    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.error_type
        self.param = param


class InvalidRequestError(KeelError):
    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedError(InvalidRequestError):
    pass


class AuthenticationError(KeelError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(KeelError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(KeelError):
    status_code = 404
    error_type = "not_found_error"


class ModelNotFoundError(NotFoundError):
    error_type = "invalid_request_error"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist.", code="model_not_found", param="model")


class ConflictError(KeelError):
    status_code = 409
    error_type = "conflict_error"


class PayloadTooLargeError(KeelError):
    status_code = 413
    error_type = "payload_too_large"


class RateLimitError(KeelError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        # Seconds until the caller may try again; sent as the Retry-After header.
        self.retry_after = retry_after


class UpstreamError(KeelError):
    status_code = 502
    error_type = "upstream_error"


class ServiceUnavailableError(KeelError):
    status_code = 503
    error_type = "service_unavailable"
