"""Proxy configs rendered by ``h2mesh._lbconfig``: golden files, and the real binaries'
own config checks (``nginx -t``, ``haproxy -c``).

Envoy cannot be installed here, so its config is checked against Envoy's API schema: every
field name, nesting and ``@type`` is looked up in the v3 API messages of the
``envoy-data-plane`` package (the data-plane-api protos as Python classes). It has not been
run by Envoy itself. ``H2MESH_UPDATE_GOLDEN=1`` rewrites the golden files after a deliberate
change.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from h2mesh._lbconfig import EdgeSpec, MethodRoute, render
from h2mesh.balancing import Endpoint

from ..conftest import require_binary

GOLDEN = Path(__file__).parent / "golden"

SPEC = EdgeSpec(
    name="demo.v1.Greeter",
    endpoints=(
        Endpoint("127.0.0.1:50001"),
        Endpoint("127.0.0.1:50002", weight=3),
        Endpoint("[::1]:50003"),
    ),
    listen="127.0.0.1:8080",
    listen_http1="127.0.0.1:8081",
    health_service="demo.v1.Greeter",
    methods=(
        MethodRoute("/demo.v1.Greeter/SayHello", idempotent=True),
        MethodRoute("/demo.v1.Greeter/Count", streaming=True),
        MethodRoute("/demo.v1.Greeter/Record"),
    ),
    command="h2mesh lb-config PROXY registry://demo.v1.Greeter --listen 127.0.0.1:8080",
)

FILES = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg", "envoy": "envoy.yaml"}


@pytest.mark.parametrize("proxy", sorted(FILES))
def test_golden(proxy: str) -> None:
    text = render(proxy, SPEC)
    path = GOLDEN / FILES[proxy]
    if os.environ.get("H2MESH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; H2MESH_UPDATE_GOLDEN=1 to accept"


def test_nginx_accepts_it(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    for spec in (SPEC, EdgeSpec("empty", (), "127.0.0.1:8080")):
        conf = tmp_path / "nginx.conf"
        conf.write_text(render("nginx", spec))
        done = subprocess.run(
            [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_haproxy_accepts_it(tmp_path: Path) -> None:
    haproxy = require_binary("haproxy")
    for spec in (SPEC, EdgeSpec("empty", (), "127.0.0.1:8080")):
        conf = tmp_path / "haproxy.cfg"
        conf.write_text(render("haproxy", spec))
        done = subprocess.run(
            [haproxy, "-c", "-f", str(conf)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "[WARNING]" not in done.stdout + done.stderr


def test_envoy_shape() -> None:
    config = _envoy_config(render("envoy", SPEC))
    (cluster,) = config["static_resources"]["clusters"]
    options = cluster["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"]
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in endpoints] == [
        {"address": "127.0.0.1", "port_value": 50001},
        {"address": "127.0.0.1", "port_value": 50002},
        {"address": "::1", "port_value": 50003},
    ]
    assert [e["load_balancing_weight"] for e in endpoints] == [1, 3, 1]
    assert cluster["health_checks"][0]["grpc_health_check"] == {"service_name": "demo.v1.Greeter"}
    listeners = config["static_resources"]["listeners"]
    assert len(listeners) == 2
    manager = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    by_path = {r["match"].get("path", r["match"].get("prefix")): r["route"] for r in routes}
    # Only the idempotent method is retried after a call reached a replica.
    assert "unavailable" in by_path["/demo.v1.Greeter/SayHello"]["retry_policy"]["retry_on"]
    for path in ("/demo.v1.Greeter/Record", "/demo.v1.Greeter/Count", "/"):
        assert by_path[path]["retry_policy"]["retry_on"] == "connect-failure,refused-stream"
    assert by_path["/demo.v1.Greeter/Count"]["idle_timeout"] == "3600s"
    for typed in _typed_configs(config):
        assert typed["@type"].startswith("type.googleapis.com/envoy.")


def _envoy_config(text: str) -> Any:
    return json.loads("\n".join(line for line in text.splitlines() if not line.startswith("#")))


def _check_schema(node: Any, cls: Any, where: str) -> int:
    """Check ``node`` (a dict as Envoy reads it) against the message class ``cls``; the
    number of fields checked. Envoy accepts the protos' own snake_case field names."""
    from envoy_data_plane.message_pool import default_message_pool

    assert isinstance(node, dict), f"{where}: expected a message, got {node!r}"
    meta = cls._betterproto
    if cls.__name__ == "Any":
        url = node.get("@type")
        assert isinstance(url, str), f"{where}: an Any without @type"
        # The message classes register themselves when their module is imported.
        importlib.import_module("envoy_data_plane." + url.rpartition("/")[2].rpartition(".")[0])
        target = default_message_pool.url_to_type.get(url)
        assert target is not None, f"{where}: unknown type {url}"
        return _check_schema({k: v for k, v in node.items() if k != "@type"}, target, url)
    checked = 0
    for key, value in node.items():
        assert key in meta.meta_by_field_name, f"{where}: {cls.__name__} has no field {key!r}"
        field = meta.meta_by_field_name[key]
        checked += 1
        if field.proto_type == "map":
            value_cls = meta.cls_by_field.get(f"{key}.value")
            if field.map_meta[1].proto_type == "message" and value_cls is not None:
                for name, item in value.items():
                    checked += _check_schema(item, value_cls, f"{where}.{key}[{name}]")
            continue
        if field.proto_type != "message" or field.unwrap is not None:
            continue  # scalars, enums, wrappers
        sub = meta.cls_by_field[key]
        if sub.__module__.startswith("envoy_data_plane.google.protobuf") and sub.__name__ in (
            "Duration",
            "Struct",
            "Value",
        ):
            continue  # well-known types with a JSON form of their own ("5s")
        for i, item in enumerate(value if field.repeated else [value]):
            checked += _check_schema(item, sub, f"{where}.{key}[{i}]")
    return checked


# The package's generated classes use a pydantic idiom that pydantic 2.12 deprecates.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_envoy_config_matches_the_envoy_api() -> None:
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    for spec in (SPEC, EdgeSpec("empty", (), "127.0.0.1:8080")):
        config = _envoy_config(render("envoy", spec))
        assert _check_schema(config, Bootstrap, "bootstrap") > 40
    # The check does catch mistakes:
    broken = _envoy_config(render("envoy", SPEC))
    broken["static_resources"]["clusters"][0]["outlier_detection"]["consecutive_500"] = 5
    with pytest.raises(AssertionError, match="no field 'consecutive_500'"):
        _check_schema(broken, Bootstrap, "bootstrap")


def _typed_configs(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        if "@type" in node:
            found.append(node)
        for value in node.values():
            found += _typed_configs(value)
    elif isinstance(node, list):
        for value in node:
            found += _typed_configs(value)
    return found


def test_unknown_proxy() -> None:
    with pytest.raises(ValueError, match="unknown proxy"):
        render("traefik", SPEC)
