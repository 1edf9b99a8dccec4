"""One parser for the ``HOST:PORT`` a user types to reach a server (danet-client, danet-eval --server).

Checked before any client library sees it: tritonclient accepts port 99999 or an unbracketed
IPv6 address in its constructor, fails inside, and its destructor then prints "Exception ignored"
tracebacks on every retry before the real reason ("is danet-serve running there?") is reached.
The rules are the URL ones (RFC 3986 authority): a host name or IPv4 address, or an IPv6 address
in brackets (``[::1]:8000``), then a port 1..65535.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import ConfigError

MAX_PORT = 65535
# a DNS name (labels of letters, digits, '-' and '_', dot-separated) or an IPv4 address
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")


@dataclass(frozen=True)
class Address:
    """A server's host and port; ``str()`` gives the ``HOST:PORT`` clients take (IPv6 bracketed)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, what: str = "address") -> Address:
    """``host:port``, ``1.2.3.4:port`` or ``[v6]:port`` -> :class:`Address`; anything else is a
    :class:`~danet_deploy.errors.ConfigError` that names ``what`` (e.g. ``--http``) and the form."""
    example = f"{what} must be HOST:PORT, e.g. 127.0.0.1:8000 or [::1]:8000"
    if not isinstance(text, str) or not text or any(c.isspace() for c in text):
        raise ConfigError(f"{example}; got {text!r}")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"{example}; got {text!r} (a bracketed IPv6 address is followed by ]:PORT)")
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ConfigError(f"{what}: {host!r} in brackets is not an IPv6 address; got {text!r}") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ConfigError(f"{example}; got {text!r} (no port)")
        if ":" in host:
            raise ConfigError(f"{what}: write an IPv6 address in brackets, e.g. [::1]:8000; got {text!r}")
        if not host:
            raise ConfigError(f"{example}; got {text!r} (no host)")
        if not _HOST_NAME.fullmatch(host):
            raise ConfigError(f"{what}: {host!r} is not a host name or IPv4 address; got {text!r}")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= MAX_PORT:
        raise ConfigError(f"{what}: the port must be a number 1..{MAX_PORT}; got {text!r}")
    return Address(host, int(port))


__all__ = ["MAX_PORT", "Address", "parse_address"]
