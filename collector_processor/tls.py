"""Optional TLS for listeners (cert/key PEM files) and the bearer-token check of the OTLP receivers.

``TlsFiles`` makes the server-side ``ssl.SSLContext`` (stdlib HTTP servers) or gRPC server credentials.
``TlsPerConnection`` is a mixin for ``socketserver`` servers that runs the TLS handshake in the connection's
own thread (a client that connects and stalls cannot block the accept loop).
``bearer_ok`` compares an ``Authorization: Bearer <token>`` value in constant time, as the Collector's
bearertokenauth extension checks it.
"""

from __future__ import annotations

import hmac
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("whyslow.tls")

HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TlsFiles:
    """PEM certificate chain and private key of a listener."""

    cert_file: str
    key_file: str

    def server_context(self) -> ssl.SSLContext:
        """A server context (TLS 1.2+) holding the certificate; raises OSError/ssl.SSLError when unreadable."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def grpc_credentials(self) -> Any:
        """grpcio server credentials for ``add_secure_port``."""
        import grpc

        return grpc.ssl_server_credentials([(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())])


class TlsPerConnection:
    """socketserver mixin: wraps each accepted connection in TLS inside the connection's thread when
    ``tls_context`` is set (set it on the instance before serving)."""

    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls_context is not None:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (OSError, ValueError) as exc:  # not TLS, a bad handshake, a timeout: nothing to answer
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        super().finish_request(request, client_address)  # type: ignore[misc]


def bearer_ok(header: str | None, token: bytes) -> bool:
    """True when ``header`` is ``Bearer <token>`` (scheme case-insensitive, constant-time comparison)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8", "replace"), token)
