"""Trusted-proxy headers (``Forwarded``, ``X-Forwarded-For``) -> the client's address."""

from __future__ import annotations

import pytest

from h2mesh.server._forwarded import ProxyTrust, forwarded_client, forwarded_scheme

PROXY = ("127.0.0.1", 40000)


def client(trust: str, *headers: tuple[str, str], peer: object = PROXY) -> object:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    return forwarded_client(raw, peer, ProxyTrust(trust))


def test_untrusted_peer_is_never_overridden() -> None:
    assert client("10.0.0.0/8", ("x-forwarded-for", "203.0.113.7")) == PROXY
    assert client("", ("x-forwarded-for", "203.0.113.7")) == PROXY


def test_x_forwarded_for_is_read_from_the_right() -> None:
    assert client("127.0.0.1", ("x-forwarded-for", "203.0.113.7")) == ("203.0.113.7", 0)
    # A client forging the header only adds entries to the left of what proxies append.
    forged = ("x-forwarded-for", "1.2.3.4, 203.0.113.7")
    assert client("127.0.0.1", forged) == ("203.0.113.7", 0)
    # Chains of trusted proxies are walked through; repeated headers join.
    chain = [("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "10.1.1.1, 10.2.2.2")]
    assert client("127.0.0.1,10.0.0.0/8", *chain) == ("198.51.100.1", 0)
    # Every hop trusted: the leftmost is the client.
    assert client("127.0.0.1,10.0.0.0/8", ("x-forwarded-for", "10.9.9.9")) == ("10.9.9.9", 0)


def test_forwarded_rfc7239_wins_and_keeps_ports() -> None:
    both = [
        ("x-forwarded-for", "192.0.2.99"),
        ("forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5;by=10.0.0.6'),
    ]
    assert client("127.0.0.1,10.0.0.0/8", *both) == ("2001:db8:cafe::17", 4711)
    assert client("127.0.0.1", ("forwarded", "for=192.0.2.43:8080")) == ("192.0.2.43", 8080)
    assert client("127.0.0.1", ("forwarded", "for=unknown")) == PROXY
    assert client("127.0.0.1", ("forwarded", "for=_hidden, for=198.51.100.3")) == (
        "198.51.100.3",
        0,
    )


def test_garbage_is_ignored() -> None:
    assert client("127.0.0.1", ("x-forwarded-for", "not-an-ip")) == PROXY
    assert client("127.0.0.1", ("x-forwarded-for", "")) == PROXY
    assert client("127.0.0.1") == PROXY


def test_trust_specs() -> None:
    trust = ProxyTrust("127.0.0.1, ::1 ,10.0.0.0/8")
    assert trust.trusts("::1") and trust.trusts("10.200.0.1") and trust.trusts("127.0.0.1")
    assert trust.trusts("::ffff:127.0.0.1")  # IPv4-mapped, as dual-stack sockets report it
    assert not trust.trusts("192.168.0.1") and not trust.trusts("nonsense")
    assert ProxyTrust("*").trusts_peer("/run/h2mesh.sock")
    assert not ProxyTrust("127.0.0.1").trusts_peer("/run/h2mesh.sock")
    assert not ProxyTrust("")
    with pytest.raises(ValueError, match="not an IP address"):
        ProxyTrust("proxy.internal")


def scheme(trust: str, *headers: tuple[str, str], peer: object = PROXY) -> str | None:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    return forwarded_scheme(raw, peer, ProxyTrust(trust))


def test_the_scheme_comes_only_from_a_trusted_peer() -> None:
    assert scheme("127.0.0.1", ("x-forwarded-proto", "https")) == "https"
    assert scheme("127.0.0.1", ("x-forwarded-proto", " HTTP ")) == "http"
    assert scheme("10.0.0.0/8", ("x-forwarded-proto", "https")) is None
    assert scheme("127.0.0.1") is None
    # Not one plain value: ignored, as uvicorn does.
    assert scheme("127.0.0.1", ("x-forwarded-proto", "https, http")) is None
    assert scheme("127.0.0.1", ("x-forwarded-proto", "ftp")) is None
    assert scheme("127.0.0.1", ("x-forwarded-proto", "https"), ("x-forwarded-proto", "x")) is None


def test_the_scheme_is_the_proto_of_the_clients_forwarded_element() -> None:
    chain = ("forwarded", "for=198.51.100.1;proto=https, for=10.0.0.5;proto=http")
    # 10.0.0.5 is a trusted proxy that the client reached over https.
    assert scheme("127.0.0.1,10.0.0.0/8", chain) == "https"
    # Not trusted: the nearest proxy's element speaks for the client, 10.0.0.5, over http.
    assert scheme("127.0.0.1", chain) == "http"
    # Forwarded wins over X-Forwarded-Proto; an element without proto says nothing.
    both = [("x-forwarded-proto", "https"), ("forwarded", 'for="[2001:db8::1]:80"')]
    assert scheme("127.0.0.1", *both) is None
    assert scheme("127.0.0.1", ("forwarded", 'for=192.0.2.1;proto="HTTPS"')) == "https"
