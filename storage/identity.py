"""People are stored only as keyed hashes: HMAC-SHA256 over ``platform:user_id``."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE_NAME = "person.key"


class PersonKeys:
    """Turns a platform user id into the pseudonymous key stored in the database."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the person secret must be at least 16 bytes")
        self._secret = secret

    @classmethod
    def from_data_dir(cls, data_dir: Path, secret: str | None = None) -> PersonKeys:
        """Use ``secret`` when given, else the key file in ``data_dir`` (created 0600 if absent)."""
        if secret:
            return cls(secret.encode("utf-8"))
        return cls(load_or_create_secret(Path(data_dir) / SECRET_FILE_NAME))

    def key(self, platform: str, user_id: str) -> str:
        message = f"{platform}:{user_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def __repr__(self) -> str:  # never show the secret
        return "PersonKeys(<secret>)"


def load_or_create_secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if len(secret) < 16:
            raise ValueError(f"{path} holds no usable secret; delete it to make a new one") from None
        return secret
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode("ascii"))
    except OSError:
        # A full disk leaves an empty file behind, which would stop every later start.
        path.unlink(missing_ok=True)
        raise
    return path.read_bytes().strip()
