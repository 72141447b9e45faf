"""The Code table and RpcError's Connect JSON form."""

from __future__ import annotations

from typing import Any

import ngh2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2mesh import Code, RpcError
from h2mesh.transport import ErrorCode

# connectrpc.com/docs/protocol#error-codes
SPEC: dict[Code, tuple[str, int]] = {
    Code.CANCELED: ("canceled", 499),
    Code.UNKNOWN: ("unknown", 500),
    Code.INVALID_ARGUMENT: ("invalid_argument", 400),
    Code.DEADLINE_EXCEEDED: ("deadline_exceeded", 504),
    Code.NOT_FOUND: ("not_found", 404),
    Code.ALREADY_EXISTS: ("already_exists", 409),
    Code.PERMISSION_DENIED: ("permission_denied", 403),
    Code.RESOURCE_EXHAUSTED: ("resource_exhausted", 429),
    Code.FAILED_PRECONDITION: ("failed_precondition", 400),
    Code.ABORTED: ("aborted", 409),
    Code.OUT_OF_RANGE: ("out_of_range", 400),
    Code.UNIMPLEMENTED: ("unimplemented", 501),
    Code.INTERNAL: ("internal", 500),
    Code.UNAVAILABLE: ("unavailable", 503),
    Code.DATA_LOSS: ("data_loss", 500),
    Code.UNAUTHENTICATED: ("unauthenticated", 401),
}

ERROR_CODES = [c for c in Code if c != Code.OK]


def test_seventeen_codes_with_grpc_numbers() -> None:
    assert len(list(Code)) == 17
    assert [int(c) for c in Code] == list(range(17))
    assert set(ERROR_CODES) == set(SPEC)


@pytest.mark.parametrize("code", ERROR_CODES, ids=lambda c: c.name)
def test_wire_name_and_http_status(code: Code) -> None:
    name, status = SPEC[code]
    assert code.wire_name == name
    assert code.http_status == status


@pytest.mark.parametrize("code", list(Code), ids=lambda c: c.name)
def test_from_wire_name_round_trip(code: Code) -> None:
    assert Code.from_wire_name(code.wire_name) is code


def test_cancelled_alias() -> None:
    assert Code.CANCELLED is Code.CANCELED
    assert Code.from_wire_name("cancelled") is Code.CANCELED
    assert Code.CANCELED.wire_name == "canceled"


@pytest.mark.parametrize("name", ["", "NOT_FOUND", "bogus", "Not_Found", "5"])
def test_unknown_wire_name_is_unknown(name: str) -> None:
    assert Code.from_wire_name(name) is Code.UNKNOWN


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, Code.INTERNAL),
        (401, Code.UNAUTHENTICATED),
        (403, Code.PERMISSION_DENIED),
        (404, Code.UNIMPLEMENTED),
        (429, Code.UNAVAILABLE),
        (502, Code.UNAVAILABLE),
        (503, Code.UNAVAILABLE),
        (504, Code.UNAVAILABLE),
        (418, Code.UNKNOWN),
        (500, Code.UNKNOWN),
        (200, Code.UNKNOWN),
    ],
)
def test_from_http_status(status: int, code: Code) -> None:
    assert Code.from_http_status(status) is code


def test_to_json_minimal_and_full() -> None:
    assert RpcError(Code.NOT_FOUND).to_json() == {"code": "not_found"}
    detail = {"type": "google.rpc.RetryInfo", "value": "CgIIAQ"}
    err = RpcError(Code.UNAVAILABLE, "try later", [detail])
    assert err.to_json() == {"code": "unavailable", "message": "try later", "details": [detail]}


details_st = st.lists(
    st.fixed_dictionaries(
        {"type": st.text(min_size=1), "value": st.text()},
        optional={"debug": st.dictionaries(st.text(), st.integers())},
    ),
    max_size=3,
)


@given(code=st.sampled_from(ERROR_CODES), message=st.text(), details=details_st)
def test_json_round_trip(code: Code, message: str, details: list[dict[str, Any]]) -> None:
    err = RpcError(code, message, details)
    back = RpcError.from_json(err.to_json(), http_status=code.http_status)
    assert back.code is code
    assert back.message == message
    assert back.details == details


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, Code.UNIMPLEMENTED), (503, Code.UNAVAILABLE), (418, Code.UNKNOWN)],
)
@pytest.mark.parametrize("body", [None, "oops", [1, 2], {}, {"code": 5}, {"message": "x"}])
def test_from_json_falls_back_to_http_status(body: Any, status: int, code: Code) -> None:
    err = RpcError.from_json(body, http_status=status)
    assert err.code is code
    assert str(status) in err.message


def test_from_json_ignores_badly_typed_optional_fields() -> None:
    err = RpcError.from_json({"code": "aborted", "message": 7, "details": "x"})
    assert err.code is Code.ABORTED
    assert err.message == ""
    assert err.details == []


def test_from_json_unknown_code_name() -> None:
    assert RpcError.from_json({"code": "teapot"}).code is Code.UNKNOWN


def test_rpc_error_fields_and_text() -> None:
    err = RpcError(5, "no such thing", metadata={"x-a": "1"})  # type: ignore[arg-type]
    assert err.code is Code.NOT_FOUND
    assert err.message == "no such thing"
    assert err.details == []
    assert err.metadata == {"x-a": "1"}
    assert str(err) == "not_found: no such thing"
    assert repr(err) == "RpcError(NOT_FOUND, 'no such thing')"
    assert str(RpcError(Code.INTERNAL)) == "internal"
    assert RpcError(Code.INTERNAL).metadata == {}
    assert isinstance(err, Exception)


def test_rpc_error_details_are_copied() -> None:
    details = ({"type": "t", "value": ""},)
    err = RpcError(Code.INTERNAL, "m", details)
    assert err.details == list(details)
    assert isinstance(err.details, list)


def test_http2_error_codes_are_the_engines() -> None:
    # Layers above transport/ name codes without importing the engine; the names and
    # values must stay those of RFC 9113 section 7, which ngh2 also spells out.
    assert {c.name: int(c) for c in ErrorCode} == {c.name: int(c) for c in ngh2.ErrorCode}
