"""Optional bearer-token access control.

Keys come from ``HYENA_API_KEYS`` (comma-separated) and/or ``HYENA_API_KEYS_FILE`` (one
per line, ``#`` comments). An entry is either a key itself or ``sha256:<64 hex digits>``,
the SHA-256 digest of a key, so a key file need not hold the keys. Only digests are kept
in memory; a presented token is hashed and compared with every digest by
:func:`hmac.compare_digest` (no early exit, so the time taken does not depend on how much
of a key matched). Keys and digests are never logged.

With keys configured every route needs ``Authorization: Bearer <key>`` except the
health probes (``/v2/health/live``, ``/v2/health/ready``), and ``/metrics`` and the
docs (``/docs``, ``/openapi.json``) when ``auth_open_metrics`` / ``auth_open_docs`` say so.
Missing credentials get 401 with ``WWW-Authenticate: Bearer``; a wrong key gets 401 with
``WWW-Authenticate: Bearer error="invalid_token"``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from hyena_serve.gateway.errors import error_response

HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
METRICS_PATHS = frozenset({"/metrics"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
REALM = "hyena_serve"

_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")


class AuthConfigError(ValueError):
    """The key configuration is unusable (named without showing any key)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _entry_digest(entry: str, where: str) -> bytes:
    m = _DIGEST.fullmatch(entry)
    if m is not None:
        return bytes.fromhex(m.group(1))
    if entry.startswith("sha256:"):
        raise AuthConfigError(f"{where}: a sha256: entry needs exactly 64 hex digits")
    if any(c.isspace() for c in entry):
        raise AuthConfigError(f"{where}: a key must not contain whitespace")
    return _digest(entry)


class KeyRing:
    """SHA-256 digests of the accepted keys."""

    def __init__(self, digests: list[bytes]) -> None:
        self._digests = tuple(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the digests
        return f"KeyRing({len(self._digests)} keys)"

    @classmethod
    def load(cls, keys: str | None, keys_file: Path | None) -> KeyRing | None:
        """The configured keys, or None when auth is off (neither source given)."""
        if keys is None and keys_file is None:
            return None
        digests = []
        if keys is not None:
            for i, entry in enumerate(e.strip() for e in keys.split(",")):
                if entry:
                    digests.append(_entry_digest(entry, f"HYENA_API_KEYS entry {i + 1}"))
        if keys_file is not None:
            try:
                lines = Path(keys_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise AuthConfigError(f"cannot read the API key file {keys_file}: {exc.strerror}") from None
            for n, line in enumerate(lines, 1):
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    digests.append(_entry_digest(entry, f"{keys_file} line {n}"))
        if not digests:
            raise AuthConfigError("API key auth is configured (HYENA_API_KEYS / HYENA_API_KEYS_FILE) but no key was "
                                  "given; refusing to start without keys")
        return cls(digests)

    def accepts(self, token: str) -> bool:
        presented = _digest(token)
        ok = False
        for digest in self._digests:  # all of them, always
            ok |= hmac.compare_digest(presented, digest)
        return ok


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, '' if another scheme or
    a malformed header was sent, None if there is no Authorization header."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else ""
    return None


class AuthMiddleware:
    """Refuses requests without a valid key (see the module docstring)."""

    def __init__(self, app: ASGIApp, keys: KeyRing, *, open_metrics: bool = False, open_docs: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = HEALTH_PATHS | (METRICS_PATHS if open_metrics else frozenset()) | (
            DOCS_PATHS if open_docs else frozenset())

    def is_open(self, path: str) -> bool:
        return path in self.open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers", []))
        if token is None:
            response = error_response(401, "unauthorized", "this route needs 'Authorization: Bearer <API key>'",
                                      {"WWW-Authenticate": f'Bearer realm="{REALM}"'})
        elif not token or not self.keys.accepts(token):
            response = error_response(401, "unauthorized", "invalid API key",
                                      {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'})
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
