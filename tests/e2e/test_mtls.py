"""Mutual TLS over real sockets, with certificates made by openssl at test time.

The server requires a client certificate from its CA (``client_ca=``): a client without
one, or with one from another CA, is refused during the handshake (curl and Python's ssl
module as peers) and no handler runs; a good one reaches the handler, which sees the
certificate's subject and SANs in ``Context``. ``Channel(client_cert=...)`` presents one.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
import pytest

from h2mesh import Channel, Code, Context, RpcError, Server, Service, rpc, server_ssl_context

from ..conftest import require_binary

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Who(msgspec.Struct):
    subject: str = ""
    sans: list[str] = []


class WhoAmI(Service, name="mtls.v1.WhoAmI"):
    def __init__(self) -> None:
        self.calls = 0

    @rpc
    async def ask(self, req: Who, ctx: Context) -> Who:
        self.calls += 1
        return Who(subject=ctx.peer_subject or "", sans=ctx.peer_sans)


def openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}", cwd=d)  # fmt: skip


def make_cert(d: Path, name: str, ca: str, cn: str, san: str, usage: str) -> None:
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/O=h2mesh tests/CN={cn}",
            cwd=d)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", str(ext),
            cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_binary("openssl")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    make_cert(d, "client", "ca", "client-1", "DNS:client-1.example,URI:spiffe://t/c1", "clientAuth")
    make_cert(d, "stranger", "other-ca", "stranger", "DNS:stranger.example", "clientAuth")
    return d


def client_context(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return ctx


def refusal(port: int, ctx: ssl.SSLContext) -> str:
    """Connect, send the HTTP/2 preface and read: how the server refused. With TLS 1.3 the
    client's half of the handshake completes first, then the server's alert arrives (or,
    on uvloop, which does not flush alerts, the connection just closes). A server that
    answers with any byte of HTTP/2 has not refused."""
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                data = tls.recv(1024)
        except (ssl.SSLError, ConnectionResetError) as exc:
            return f"alert: {exc}"
    assert data == b"", f"the server answered: {data!r}"
    return "closed"


def test_client_certificates_are_required_and_verified(run: Run, pki: Path, curl: str) -> None:
    service = WhoAmI()

    async def main() -> None:
        tls = server_ssl_context(
            str(pki / "server.pem"), str(pki / "server.key"), client_ca=str(pki / "ca.pem")
        )
        server = Server([service])
        await server.start("127.0.0.1", 0, tls=tls)
        try:
            port = server.port
            loop = asyncio.get_running_loop()
            # No certificate: refused at the handshake.
            how = await loop.run_in_executor(None, refusal, port, client_context(pki, None))
            assert how == "closed" or "CERTIFICATE_REQUIRED" in how.upper(), how
            # A certificate from another CA: refused at the handshake.
            how = await loop.run_in_executor(None, refusal, port, client_context(pki, "stranger"))
            assert how == "closed" or "UNKNOWN_CA" in how.upper(), how
            # curl, the same two ways, then with a good certificate.
            url = f"https://127.0.0.1:{port}/mtls.v1.WhoAmI/Ask"
            base = [curl, "-s", "--http2", "--cacert", str(pki / "ca.pem"),
                    "-H", "content-type: application/json", "-d", "{}"]  # fmt: skip
            no_cert = await asyncio.to_thread(
                subprocess.run, [*base, url], capture_output=True, text=True, timeout=10
            )
            assert no_cert.returncode != 0 and no_cert.stdout == ""
            stranger = await asyncio.to_thread(
                subprocess.run,
                [*base, "--cert", str(pki / "stranger.pem"),
                 "--key", str(pki / "stranger.key"), url],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            assert stranger.returncode != 0 and stranger.stdout == ""
            assert service.calls == 0  # no handler ran for any of them
            good = await asyncio.to_thread(
                subprocess.run,
                [*base, "--cert", str(pki / "client.pem"), "--key", str(pki / "client.key"), url],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            assert good.returncode == 0, good.stderr
            who = msgspec.json.decode(good.stdout, type=Who)
            assert who.subject == "CN=client-1,O=h2mesh tests"
            assert who.sans == ["DNS:client-1.example", "URI:spiffe://t/c1"]
            # h2mesh's own client presents its certificate with client_cert=.
            async with Channel(
                f"https://127.0.0.1:{port}",
                ssl_context=ssl.create_default_context(cafile=str(pki / "ca.pem")),
                client_cert=(str(pki / "client.pem"), str(pki / "client.key")),
            ) as ch:
                who = await ch.stub(WhoAmI).ask(Who(), timeout=5)
                assert who.subject == "CN=client-1,O=h2mesh tests"
            # ... and without one its call fails as unavailable, never reaching a handler.
            async with Channel(
                f"https://127.0.0.1:{port}",
                ssl_context=ssl.create_default_context(cafile=str(pki / "ca.pem")),
            ) as ch:
                with pytest.raises(RpcError) as info:
                    await ch.stub(WhoAmI).ask(Who(), timeout=5)
                assert info.value.code is Code.UNAVAILABLE
            assert service.calls == 2
        finally:
            await server.stop(1.0)

    run(main())


def served_serial(port: int, pki: Path) -> str:
    """The serial number of the certificate the server presents to a new connection."""
    ctx = client_context(pki, "client")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    return str(cert["serialNumber"])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_reloads_certificate_files(pki: Path, tmp_path: Path, workers: str) -> None:
    from .test_workers import start

    for name in ("server.pem", "server.key"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    sup = start(
        tmp_path,
        "--workers", workers,
        "--tls-cert", str(tmp_path / "server.pem"),
        "--tls-key", str(tmp_path / "server.key"),
        "--tls-client-ca", str(pki / "ca.pem"),
    )  # fmt: skip
    try:
        port = int(sup.url.rsplit(":", 1)[1])
        before = served_serial(port, pki)
        # A renewed certificate, written over the old files.
        make_cert(pki, f"renewed{workers}", "ca", "localhost", "IP:127.0.0.1", "serverAuth")
        for ext in ("pem", "key"):
            (tmp_path / f"server.{ext}").write_bytes((pki / f"renewed{workers}.{ext}").read_bytes())
        mark = len(sup.output())
        sup.proc.send_signal(signal.SIGHUP)
        sup.wait_log("reloaded", after=mark)
        after = served_serial(port, pki)
        assert after != before
    finally:
        sup.stop()
