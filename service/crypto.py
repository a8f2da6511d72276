"""Secrets at rest (bridge tokens, signing secrets): Fernet with a key derived from SECRET_KEY per purpose."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["InvalidToken", "decrypt_secret", "encrypt_secret"]


def _fernet(secret_key: str, purpose: str) -> Fernet:
    # HKDF with a per-purpose label: a key leaked from one use cannot decrypt another's secrets.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"switchboard:{purpose}".encode()).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret_key: str, purpose: str, plaintext: str) -> str:
    """Authenticated encryption (AES-128-CBC + HMAC-SHA256, random IV); the token is ASCII."""
    return _fernet(secret_key, purpose).encrypt(plaintext.encode()).decode()


def decrypt_secret(secret_key: str, purpose: str, token: str) -> str:
    """The plaintext; ``InvalidToken`` when SECRET_KEY changed or the value was tampered with."""
    return _fernet(secret_key, purpose).decrypt(token.encode()).decode()
