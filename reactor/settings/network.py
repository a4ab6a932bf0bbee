"""The network settings of `reactor serve`: `listen` (host and port) and `allow`.

`split_listen` is how every part of reactor reads a `listen` value (serve binding it,
`reactor check` probing it, `reactor status` finding the service on this host), and
`is_loopback` the one definition of an address only this host can reach.
"""

from __future__ import annotations

import ipaddress
import re

from reactor.settings.parsing import DEFAULT_PORT, Invalid, is_decimal, toml_type

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow(raw: object, from_text: bool) -> tuple[Network, ...]:
    """The `allow` key: a list of networks (a comma-separated string from a flag)."""
    if from_text and isinstance(raw, str):
        items: list[object] = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, list):
        items = raw
    else:
        msg = f'must be a list of networks such as ["10.0.0.0/8"], got {toml_type(raw)}'
        raise Invalid(msg)
    return tuple(_parse_network(item) for item in items)


def _parse_network(item: object) -> Network:
    if not isinstance(item, str):
        msg = f"must list networks as strings, got {toml_type(item)}"
        raise Invalid(msg)
    try:
        return ipaddress.ip_network(item.strip())
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(item.strip(), strict=False)
    except ValueError:
        msg = f"entry {item!r} is not a network such as 10.0.0.0/8, 192.168.1.7 or fd00::/8"
        raise Invalid(msg) from None
    msg = f"entry {item!r} has host bits set; did you mean {loose}?"
    raise Invalid(msg)


def listen_problem(value: str) -> str | None:
    """What is wrong with a `listen` value, or None."""
    try:
        split_listen(value)
    except Invalid as err:
        return str(err)
    return None


_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_LISTEN_FORMS = "host:port, [ipv6]:port or a port, such as 127.0.0.1:40765"


def split_listen(listen: str) -> tuple[str, int]:
    """`listen` as (host, port); a bare port listens on 127.0.0.1, a bare host on 40765."""
    text = listen.strip()
    if is_decimal(text):
        return "127.0.0.1", _port(text)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            sep = ""
        if not sep or (rest and not rest.startswith(":")):
            msg = f"{listen!r} is not {_LISTEN_FORMS}"
            raise Invalid(msg)
        return host, _port(rest[1:]) if rest else DEFAULT_PORT
    if text.count(":") > 1:
        msg = f"{listen!r} looks like an IPv6 address: put it in brackets, as in [::1]:40765"
        raise Invalid(msg)
    host, sep, port_text = text.partition(":")
    if _HOST_RE.fullmatch(host) is None or (re.fullmatch(r"[0-9.]+", host) and not _is_ipv4(host)):
        msg = f"{listen!r} is not {_LISTEN_FORMS}"
        raise Invalid(msg)
    return host, _port(port_text) if sep else DEFAULT_PORT


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _port(text: str) -> int:
    if not is_decimal(text) or not 1 <= int(text) <= 65535:
        msg = f"port must be a number from 1 to 65535, got {text!r}"
        raise Invalid(msg)
    return int(text)


def is_loopback(host: str) -> bool:
    """The one definition of "loopback": `localhost`, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def same_listen(one: str, other: str) -> bool:
    """Do two `listen` values name the same address (`40765` is `127.0.0.1:40765`,
    `[::0]:1` is `[::]:1`)? Host names are compared as written."""
    (host, port), (other_host, other_port) = split_listen(one), split_listen(other)
    return port == other_port and _address(host) == _address(other_host)


def _address(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()
