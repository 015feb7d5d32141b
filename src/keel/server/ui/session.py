"""Dashboard sessions: a signed, expiring cookie naming the API key that logged in (never the key itself),
and per-session CSRF tokens for the forms."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

COOKIE = "keel_session"
MAX_AGE_S = 8 * 3600


def load_secret(data_dir: Path, configured: str | None) -> str:
    """`KEEL_UI_SECRET` when set (replicas must share one); else a random one kept in the data directory."""
    if configured:
        return configured
    path = data_dir / "ui-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class Sessions:
    def __init__(self, secret: str) -> None:
        self._cookies = URLSafeTimedSerializer(secret, salt="keel-ui-session")
        self._csrf = URLSafeTimedSerializer(secret, salt="keel-ui-csrf")

    def issue(self, key_id: str) -> str:
        return self._cookies.dumps({"key_id": key_id})

    def key_id(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            data = self._cookies.loads(cookie, max_age=MAX_AGE_S)
        except (BadSignature, SignatureExpired):
            return None
        return str(data["key_id"]) if isinstance(data, dict) and "key_id" in data else None

    def csrf_token(self, key_id: str) -> str:
        return self._csrf.dumps(key_id)

    def csrf_valid(self, key_id: str, token: str | None) -> bool:
        if not token:
            return False
        try:
            return bool(self._csrf.loads(token, max_age=MAX_AGE_S) == key_id)
        except (BadSignature, SignatureExpired):
            return False
