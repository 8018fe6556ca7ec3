"""Authenticated model blobs: a persisted model is loaded only when it carries our HMAC.

Models are pickled (engine models hold fitted mechanisms of several kinds), and unpickling runs code, so a
blob from the data directory is trusted only if its HMAC-SHA256 under a key *outside* the data directory
checks out: whoever can write the data directory cannot forge one. Format: ``WSM1`` + 32-byte tag + pickle.

The key, in order: ``model_key_file`` (created 0600 with a random key if missing); else derived from the
auth token (so a container whose root filesystem is read-only keeps its models across restarts when auth is
on); else ``$XDG_CONFIG_HOME/whyslow/model.key`` (``~/.config``), created 0600; else a per-process random key
(a warning: persisted models are refitted after a restart).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

log = logging.getLogger("whyslow.models")

MAGIC = b"WSM1"
_TAG = 32


class BlobRejected(ValueError):
    """A stored blob that is not ours (no or wrong tag, other format): never unpickled."""


def _read_or_create(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def model_key(key_file: str | None = None, auth_token: str | None = None) -> bytes:
    """The HMAC key (see the module docstring for where it comes from)."""
    if key_file:
        return _read_or_create(Path(key_file))  # configured: an error here is the operator's to see
    if auth_token:
        return hashlib.sha256(b"whyslow model key\0" + auth_token.encode()).digest()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    try:
        return _read_or_create(base / "whyslow" / "model.key")
    except OSError as exc:
        log.warning("no place for the model signing key (%s); persisted models will be refitted after a "
                     "restart (set model_key_file)", exc)
        return secrets.token_bytes(32)


def dump(obj: Any, key: bytes) -> bytes:
    """Pickle ``obj`` and prefix the format tag and its HMAC."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + hmac.new(key, payload, hashlib.sha256).digest() + payload


def load(blob: bytes, key: bytes) -> Any:
    """Unpickle a blob made by :func:`dump` with the same key; raises BlobRejected before unpickling
    anything else."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _TAG:
        raise BlobRejected("not an authenticated whyslow model blob (an older format or foreign data)")
    tag, payload = blob[len(MAGIC):len(MAGIC) + _TAG], blob[len(MAGIC) + _TAG:]
    if not hmac.compare_digest(tag, hmac.new(key, payload, hashlib.sha256).digest()):
        raise BlobRejected("model blob signature does not match (tampered, or signed with another key)")
    return pickle.loads(payload)  # noqa: S301 - authenticated above with a key outside the data directory
