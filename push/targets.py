"""Where a webhook may be sent: http(s) URLs without credentials, to public addresses only.

A URL is checked when it is registered (its host, and every address the host resolves to) and again when a
delivery connects: the delivery resolves the host once, checks the addresses, and connects to the address it
checked (push/sender.py), so a name that resolves elsewhere the second time (DNS rebinding) can't reach a
private address. WEBHOOK_ALLOW_PRIVATE_TARGETS=1 lifts the address check (a gateway on the same host; tests).
"""
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
SCHEMES = {"http": 80, "https": 443}
# Ranges Python's ipaddress does not count as non-global, refused anyway.
ALSO_REFUSED = (ipaddress.ip_network("100.64.0.0/10"),)


class RefusedTarget(ValueError):
    """A URL or address a webhook may not be sent to; the message says why (never with the URL's path)."""


class Target:
    """A checked URL's parts: scheme, host, port, and the path with its query."""
    __slots__ = ("scheme", "host", "port", "path")

    def __init__(self, scheme, host, port, path):
        self.scheme, self.host, self.port, self.path = scheme, host, port, path

    @property
    def host_header(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"


def parse(url):
    """The URL's Target, or raise RefusedTarget: http or https, a host, no user or password."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedTarget("is not a valid URL") from None
    if parts.scheme not in SCHEMES:
        raise RefusedTarget("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("must not carry credentials (user:password@)")
    if not parts.hostname:
        raise RefusedTarget("must name a host")
    if any(character.isspace() for character in url):
        raise RefusedTarget("must not contain spaces")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or SCHEMES[parts.scheme], path)


def is_refused_address(address):
    """Loopback, private, link-local, CGNAT, multicast, reserved or unspecified: anything not global."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified
            or any(ip in network for network in ALSO_REFUSED))


def resolve(target):
    """The addresses the target's host stands for, in the resolver's order; an IP literal is itself."""
    try:
        return [ipaddress.ip_address(target.host).compressed]
    except ValueError:
        pass
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_addresses(addresses, allow_private):
    """Raise RefusedTarget when any address may not be sent to (the first one names the kind)."""
    if allow_private:
        return
    for address in addresses:
        if is_refused_address(address):
            raise RefusedTarget("must not resolve to a loopback, private, link-local, shared (CGNAT), multicast, "
                                "reserved or unspecified address")


def check_registration(url, allow_private):
    """Raise RefusedTarget for a URL that may not be registered. A host that does not resolve now is accepted:
    it is checked again, on the address used, at every delivery."""
    target = parse(url)
    try:
        addresses = resolve(target)
    except (OSError, UnicodeError):
        return
    check_addresses(addresses, allow_private)
