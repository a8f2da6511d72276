"""Keys for the push tests: an APNs .p8 key, a Firebase service account, VAPID keys, a browser's subscription keys,
and a self-signed TLS certificate for the APNs stand-in."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.tls import self_signed


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def es256_key() -> KeyPair:
    """A P-256 key, as an APNs .p8 key (PKCS#8 PEM) or a VAPID key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(_pem(key), _public_pem(key))


def service_account(token_uri: str, project_id: str = "switchboard-test") -> tuple[dict[str, Any], str]:
    """A Firebase service account JSON key (RSA), and its public key PEM for the stand-in."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "k" + os.urandom(8).hex(),
        "private_key": _pem(key),
        "client_email": f"push@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return info, _public_pem(key)


@dataclass(frozen=True)
class BrowserKeys:
    """What a browser keeps for its push subscription: the P-256 key and the auth secret; ``keys`` is what it sends."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def keys(self) -> dict[str, str]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}


def browser_keys() -> BrowserKeys:
    return BrowserKeys(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))


def tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (certificate file, key file)."""
    return self_signed(directory, "127.0.0.1")
