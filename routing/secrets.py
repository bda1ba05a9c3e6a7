"""Encryption of provider API keys at rest.

Keys are encrypted with Fernet (AES-128-CBC + HMAC) under a key derived from
settings.SWITCHYARD_ENCRYPTION_KEY. Plain keys are never logged or rendered.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted (the encryption key has changed)."""


@lru_cache(maxsize=4)
def _fernet(master: str) -> Fernet:
    digest = hashlib.sha256(b"switchyard-provider-keys:" + master.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plain: str) -> str:
    return _fernet(settings.SWITCHYARD_ENCRYPTION_KEY).encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(settings.SWITCHYARD_ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("stored API key cannot be decrypted; was SWITCHYARD_ENCRYPTION_KEY changed?") from exc
