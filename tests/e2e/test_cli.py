"""The ``h2mesh`` command, run as real processes: ``serve`` a service, ``call`` it, stop it."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
H2MESH = Path(sys.executable).parent / "h2mesh"
STARTUP_TIMEOUT = 10.0


def _require(binary: str) -> str:
    path = shutil.which(binary)
    assert path is not None, f"{binary} is required by these tests but is not installed"
    return path


class ServerProcess:
    """A running ``h2mesh serve``; ``url`` comes from the line it prints when listening."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _serve(tmp: Path, *args: str) -> ServerProcess:
    assert H2MESH.exists(), f"the h2mesh script is missing: pip install -e {REPO}"
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(H2MESH), "serve", *args, "--port", "0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("h2mesh serving on "):
        proc.kill()
        proc.wait(5)
        pytest.fail(f"server did not start: {line!r}\n{log.read_text()}")
    return ServerProcess(proc, line.removeprefix("h2mesh serving on ").strip(), log)


def _call(
    *args: str, stdin: str | None = None, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(H2MESH), "call", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = _serve(tmp_path_factory.mktemp("serve"), "examples.greeter:Greeter")
    yield srv
    srv.stop()


# -- call ----------------------------------------------------------------------------------
def test_serve_prints_url_and_logs_routes(server: ServerProcess) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert server.port > 0
    # The routes are logged on stderr right after the ready line.
    paths = [f"/demo.v1.Greeter/{name}" for name in ("SayHello", "Count", "Total", "Chat")]
    deadline = time.monotonic() + 5
    while not all(p in server.log.read_text() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.02)
    log = server.log.read_text()
    assert all(p in log for p in paths), log


def test_unary_call(server: ServerProcess) -> None:
    out = _call(server.url, "demo.v1.Greeter/SayHello", '{"name":"cli"}')
    assert out.returncode == 0, out.stderr
    assert out.stdout == '{"message":"Hello, cli!"}\n'


def test_server_stream_is_detected(server: ServerProcess) -> None:
    out = _call(server.url, "demo.v1.Greeter/Count", '{"to":3}')
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]


def test_forced_stream(server: ServerProcess) -> None:
    out = _call(server.url, "demo.v1.Greeter/Count", '{"to":2}', "--stream")
    assert out.returncode == 0, out.stderr
    assert out.stdout == '{"n":1}\n{"n":2}\n'


def test_client_stream_method_with_one_message(server: ServerProcess) -> None:
    out = _call(server.url, "/demo.v1.Greeter/Total", '{"value":7}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"total": 7, "count": 1}


def test_body_from_stdin_and_headers(server: ServerProcess) -> None:
    out = _call(
        server.url,
        "demo.v1.Greeter/SayHello",
        "-",
        "--header",
        "x-trace: abc",
        "-H",
        "x-other:1",
        stdin='{"name": "stdin"}\n',
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"message": "Hello, stdin!"}


def test_python_dash_m(server: ServerProcess) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "h2mesh",
            "call",
            server.url,
            "demo.v1.Greeter/SayHello",
            '{"name":"m"}',
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == '{"message":"Hello, m!"}\n'


def test_rpc_error_exits_64_plus_its_code(server: ServerProcess) -> None:
    out = _call(server.url, "demo.v1.Greeter/SayHello", '{"name":""}')
    assert out.returncode == 64 + 3  # invalid_argument, as grpcurl reports it
    assert out.stdout == ""
    assert out.stderr.strip() == "error: invalid_argument: name must not be empty"


def test_invalid_request_message(server: ServerProcess) -> None:
    out = _call(server.url, "demo.v1.Greeter/SayHello", '{"name":5}')
    assert out.returncode == 64 + 3
    assert out.stderr.startswith("error: invalid_argument: ")


def test_unknown_method(server: ServerProcess) -> None:
    out = _call(server.url, "demo.v1.Greeter/Nope")
    assert out.returncode == 64 + 12
    assert out.stderr.startswith("error: unimplemented: ")
    assert "Nope" in out.stderr


def test_deadline(server: ServerProcess) -> None:
    out = _call(server.url, "demo.v1.Greeter/Count", '{"to":5,"delay":0.5}', "--timeout", "0.3")
    assert out.returncode == 64 + 4
    assert out.stderr.startswith("error: deadline_exceeded: ")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo.v1.Greeter/SayHello", "{not json"], "not valid JSON"),
        (["SayHello"], "SERVICE/METHOD"),
        (["demo.v1.Greeter/SayHello", "{}", "--header", "novalue"], "NAME:VALUE"),
    ],
)
def test_bad_call_arguments_exit_2(server: ServerProcess, args: list[str], message: str) -> None:
    out = _call(server.url, *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_url_exits_2() -> None:
    out = _call("ftp://127.0.0.1:1", "demo.v1.Greeter/SayHello")
    assert out.returncode == 2
    assert out.stderr.startswith("error: ")


def test_nothing_listening_is_unavailable(tmp_path: Path) -> None:
    srv = _serve(tmp_path, "examples.greeter:Greeter")
    url = srv.url
    srv.stop()  # the port is now closed
    out = _call(url, "demo.v1.Greeter/SayHello", '{"name":"x"}')
    assert out.returncode == 64 + 14
    assert out.stderr.startswith("error: unavailable: ")


# -- serve ---------------------------------------------------------------------------------
def test_sigterm_drains_in_flight_stream_and_exits_0(tmp_path: Path) -> None:
    srv = _serve(tmp_path, "examples.greeter:Greeter", "--grace", "5")
    try:
        caller = subprocess.Popen(
            [str(H2MESH), "call", srv.url, "demo.v1.Greeter/Count", '{"to":5,"delay":0.2}'],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert caller.stdout is not None
        # Wait until the stream is under way, then ask the server to stop.
        ready, _, _ = select.select([caller.stdout], [], [], 10)
        assert ready, "the streaming call produced nothing"
        first = caller.stdout.readline()
        assert json.loads(first) == {"n": 1}
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        rest, err = caller.communicate(timeout=10)
        assert caller.returncode == 0, err
        assert "Traceback" not in err
        assert [json.loads(line) for line in rest.splitlines()] == [
            {"n": 2},
            {"n": 3},
            {"n": 4},
            {"n": 5},
        ]
        assert srv.proc.wait(5) == 0
        assert time.monotonic() - started < 5
        assert "Traceback" not in srv.log.read_text()
    finally:
        srv.stop()


def test_sigint_stops_idle_server(tmp_path: Path) -> None:
    srv = _serve(tmp_path, "examples.greeter:Greeter", "--loop", "asyncio")
    try:
        out = _call(srv.url, "demo.v1.Greeter/SayHello", '{"name":"asyncio"}')
        assert out.stdout == '{"message":"Hello, asyncio!"}\n'
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(5) == 0
    finally:
        srv.stop()


def test_serves_a_list_of_service_instances(tmp_path: Path) -> None:
    app = tmp_path / "cli_app_list.py"
    app.write_text("from examples.greeter import Greeter\nservices = [Greeter()]\n")
    # The module lives in tmp_path: run from there, with the repo importable for `examples`.
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(H2MESH), "serve", "cli_app_list:services", "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
        assert ready, log.read_text()
        url = proc.stdout.readline().decode().removeprefix("h2mesh serving on ").strip()
        out = _call(url, "demo.v1.Greeter/SayHello", '{"name":"list"}')
        assert out.stdout == '{"message":"Hello, list!"}\n', out.stderr
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        proc.stdout.close()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Greeter", "cannot import module 'no_such_module_xyz'"),
        ("examples.greeter:Nope", "has no attribute 'Nope'"),
        ("examples.greeter:HelloRequest", "expected a Service class"),
        ("examples.greeter:asyncio", "expected a Service class"),
        ("examples.greeter", "MODULE:OBJECT"),
    ],
)
def test_bad_target_exits_2(target: str, message: str) -> None:
    out = subprocess.run(
        [str(H2MESH), "serve", target, "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 2
    assert out.stdout == ""
    assert message in out.stderr
    assert out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr


# -- TLS -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = _require("openssl")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "c.pem", d / "k.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    cert, key = tls_files
    srv = _serve(
        tmp_path_factory.mktemp("serve-tls"),
        "examples.greeter:Greeter",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    yield srv
    srv.stop()


@pytest.mark.parametrize(("flag", "version"), [("--http2", "2"), ("--http1.1", "1.1")])
def test_tls_serves_curl(tls_server: ServerProcess, flag: str, version: str) -> None:
    curl = _require("curl")
    assert tls_server.url.startswith("https://127.0.0.1:")
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-k",
            flag,
            "-H",
            "content-type: application/json",
            "-d",
            '{"name":"tls"}',
            "-w",
            "\n%{http_version}",
            f"{tls_server.url}/demo.v1.Greeter/SayHello",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr
    body, _, http_version = out.stdout.rpartition("\n")
    assert json.loads(body) == {"message": "Hello, tls!"}
    assert http_version == version


def test_tls_call(tls_server: ServerProcess, tls_files: tuple[Path, Path]) -> None:
    cert, _ = tls_files
    out = _call(tls_server.url, "demo.v1.Greeter/SayHello", '{"name":"k"}', "--insecure")
    assert out.returncode == 0, out.stderr
    assert out.stdout == '{"message":"Hello, k!"}\n'
    out = _call(tls_server.url, "demo.v1.Greeter/Count", '{"to":2}', "--cacert", str(cert))
    assert out.returncode == 0, out.stderr
    assert out.stdout == '{"n":1}\n{"n":2}\n'
    # Without trusting the self-signed certificate, the call must fail.
    out = _call(tls_server.url, "demo.v1.Greeter/SayHello", '{"name":"k"}')
    assert out.returncode == 64 + 14
    assert out.stderr.startswith("error: unavailable: ")


def test_tls_needs_both_files(tls_files: tuple[Path, Path]) -> None:
    cert, _ = tls_files
    out = subprocess.run(
        [str(H2MESH), "serve", "examples.greeter:Greeter", "--port", "0", "--tls-cert", str(cert)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 2
    assert "--tls-key" in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [str(H2MESH), "serve", "examples.greeter:Greeter", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"error: cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
