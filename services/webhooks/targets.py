"""Where a webhook may go (SSRF): https to public addresses only, unless
``HUB_WEBHOOKS_ALLOW_PRIVATE`` (development, tests on 127.0.0.1) also allows plain http
and loopback, private, link-local and other special addresses. The name is resolved
and checked at each attempt, and the connection goes to the address checked (a name
that resolves elsewhere the second time cannot redirect it); redirects are not
followed."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.errors import ServiceError


class WebhookTargetRefused(ServiceError):
    code = "webhook_target_refused"


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name, for Host, TLS SNI and the certificate check
    port: int
    path: str
    address: str  # the checked IP address the connection goes to


def parse(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    if len(url) > 2048:
        raise WebhookTargetRefused("a webhook URL is at most 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookTargetRefused("not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookTargetRefused("a webhook URL is https://host/path")
    if parts.scheme == "http" and not allow_private:
        raise WebhookTargetRefused("webhooks go over https (personal data travels in them)")
    if parts.username or parts.password:
        raise WebhookTargetRefused("a webhook URL carries no user or password")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def resolve(url: str, *, allow_private: bool) -> Target:
    scheme, host, port, path = parse(url, allow_private=allow_private)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookTargetRefused(f"cannot resolve the host {host}") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not allow_private and not _public(address):
            raise WebhookTargetRefused(
                "the host resolves to a loopback, private or otherwise non-public address"
            )
    return Target(scheme, host, port, path, addresses[0])


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast
