"""Secrets at rest (bridge tokens, signing secrets) and signed values (file URLs), with keys derived from
SECRET_KEY per purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["InvalidToken", "decrypt_secret", "encrypt_secret", "sign", "signature_matches"]


def _key(secret_key: str, purpose: str) -> bytes:
    # HKDF with a per-purpose label: a key leaked from one use cannot decrypt another's secrets.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"switchboard:{purpose}".encode()).derive(
        secret_key.encode()
    )


def _fernet(secret_key: str, purpose: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_key(secret_key, purpose)))


def sign(secret_key: str, purpose: str, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` (joined by newlines), URL-safe base64 without padding."""
    digest = hmac.new(_key(secret_key, purpose), "\n".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signature_matches(secret_key: str, purpose: str, signature: str, *parts: str) -> bool:
    """Whether ``signature`` is ``sign(...)`` of these parts (compared in constant time)."""
    return hmac.compare_digest(sign(secret_key, purpose, *parts).encode(), signature.encode())


def encrypt_secret(secret_key: str, purpose: str, plaintext: str) -> str:
    """Authenticated encryption (AES-128-CBC + HMAC-SHA256, random IV); the token is ASCII."""
    return _fernet(secret_key, purpose).encrypt(plaintext.encode()).decode()


def decrypt_secret(secret_key: str, purpose: str, token: str) -> str:
    """The plaintext; ``InvalidToken`` when SECRET_KEY changed or the value was tampered with."""
    return _fernet(secret_key, purpose).decrypt(token.encode()).decode()
