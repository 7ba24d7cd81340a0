"""Whether a hosted service could fetch a URL itself: only when its host is public.

A URL on the user's own machine or network (``localhost``, ``10.0.0.5``, ``nas.local``,
``printer``) reaches nothing from a hosted API; readers send such media as bytes instead.
:func:`is_public_url` is pure apart from name resolution, which callers (and tests) can
replace with their own ``resolve``.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable, Iterable

__all__ = ["Resolver", "is_public_url", "is_public_address", "resolve_host"]

Resolver = Callable[[str], Iterable[str]]
"""A host name to the addresses it resolves to (empty when it does not resolve)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_PRIVATE_NAME_SUFFIXES = (
    ".localhost", ".local", ".localdomain", ".internal", ".intranet", ".lan", ".home", ".home.arpa",
    ".corp", ".private", ".test", ".invalid", ".example", ".onion", ".arpa",
)
"""Special-use and private-use names (RFC 6761, 6762, 8375 and ICANN's .internal)."""

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def resolve_host(host: str) -> list[str]:
    """The addresses ``host`` resolves to on this machine; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_WELL_KNOWN or int(ip) >> 32 == 0:  # NAT64, or the old ::a.b.c.d form
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True for a globally routable unicast address; False for loopback, private (10/8,
    172.16/12, 192.168/16, fc00::/7), link-local, CGNAT (100.64/10), multicast, reserved,
    and IPv6 forms that carry one of those IPv4 addresses."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address, including the loose IPv4 forms (``127.1``, ``0x7f000001``,
    ``2130706433``) that resolvers accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not any(c.isdigit() for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _is_private_name(host: str) -> bool:
    """localhost, single-label names (``nas``) and special-use domains (``.local``, ...)."""
    return host in _PRIVATE_NAMES or "." not in host or host.endswith(_PRIVATE_NAME_SUFFIXES)


def is_public_url(url: str, resolve: Resolver = resolve_host) -> bool:
    """True when a hosted service could fetch ``url``: http(s), and its host is a public
    address or a name that resolves only to public addresses."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not host:
        return False
    host = host.rstrip(".")
    literal = _literal_address(host)
    if literal is not None:
        return is_public_address(literal)
    if _is_private_name(host):
        return False
    addresses = [_literal_address(a.split("%", 1)[0]) for a in resolve(host)]
    return bool(addresses) and all(a is not None and is_public_address(a) for a in addresses)
