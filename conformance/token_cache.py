"""A cache of Maskinporten tokens that keeps nothing readable on disk.

``kfr-conformance token`` runs as a new process each time, so a cache that lets a developer
call KFR from curl for a while without a new token request must live on disk. A token is a
bearer secret, so each entry is encrypted to the bank certificate's public key: a fresh
AES-256-GCM key per entry, wrapped with RSA-OAEP (SHA-256). Only the holder of the
certificate's private key — which the tool needs anyway to ask Maskinporten for a new
token — can read an entry back, so the cache exposes nothing the key does not already.
The entry's name (a hash of environment, issuer, client, scopes and certificate) is the
AES-GCM associated data, so an entry copied to another name does not decrypt.

Files are ``0600`` in a ``0700`` folder, written atomically. An entry that does not
decrypt, has expired or is within ``RENEW_MARGIN_S`` of expiry counts as missing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conformance.atomic import atomic_write_bytes
from conformance.auth import AccessToken, Credentials
from conformance.home import conformance_home

__all__ = ["RENEW_MARGIN_S", "CachedToken", "TokenCache", "default_cache_dir"]

RENEW_MARGIN_S = 60.0  # a token handed out has at least this long left
FORMAT_VERSION = 1
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def default_cache_dir() -> Path:
    return conformance_home() / "token-cache"


@dataclass(frozen=True)
class CachedToken:
    value: str = field(repr=False)
    expires_at: float
    scope: str


class TokenCache:
    def __init__(self, folder: Path, credentials: Credentials, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.credentials = credentials
        self.clock = clock
        der = credentials.certificate.public_bytes(serialization.Encoding.DER)
        self._cert_sha256 = hashlib.sha256(der).hexdigest()

    def key(self, *, environment: str, issuer: str, client_id: str, scopes: Sequence[str]) -> str:
        """The entry name for a token request (scopes in any order name the same entry)."""
        material = json.dumps(
            [FORMAT_VERSION, environment, issuer, client_id, sorted(set(scopes)), self._cert_sha256]
        )
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.token"

    def get(self, key: str) -> CachedToken | None:
        path = self._path(key)
        try:
            envelope = json.loads(path.read_bytes())
            if envelope.get("version") != FORMAT_VERSION or envelope.get("cert") != self._cert_sha256:
                return None
            aes_key = self.credentials.private_key.decrypt(base64.b64decode(envelope["key"]), _OAEP)
            plain = AESGCM(aes_key).decrypt(
                base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["data"]), key.encode()
            )
            data = json.loads(plain)
            token = CachedToken(str(data["access_token"]), float(data["expires_at"]), str(data["scope"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, InvalidTag):
            self.remove(key)  # unreadable or not ours: it can only be refetched
            return None
        if self.clock() >= token.expires_at - RENEW_MARGIN_S:
            self.remove(key)
            return None
        return token

    def put(self, key: str, token: AccessToken) -> None:
        plain = json.dumps(
            {"access_token": token.value, "expires_at": token.expires_at, "scope": token.scope}
        ).encode()
        aes_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        envelope = {
            "version": FORMAT_VERSION,
            "cert": self._cert_sha256,
            "key": base64.b64encode(self.credentials.certificate.public_key().encrypt(aes_key, _OAEP)).decode(),
            "nonce": base64.b64encode(nonce).decode(),
            "data": base64.b64encode(AESGCM(aes_key).encrypt(nonce, plain, key.encode())).decode(),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        atomic_write_bytes(self._path(key), json.dumps(envelope).encode(), mode=0o600)

    def remove(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()
