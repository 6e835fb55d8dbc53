"""The response contract: every JSON body the suite receives through the official SDK is
checked against Oracle's Block Volume contract (``shared/spec/oracle-blockstorage-contract.yaml``)
and the SDK's own models.

Checked for every response: strict JSON (RFC 8259: UTF-8, no ``NaN``/``Infinity``, no lone
surrogates), no ``null`` anywhere (Oracle's schemas have no nullable property). For the
operations of the contract (matched by method and path template): the success status, and the
body against the response schema — no unknown keys (a key must be in the contract or in the
SDK model), required keys present, types, enums, string lengths, number ranges, item counts,
RFC 3339 times; discriminated subtypes (``sourceDetails``, ``autotunePolicies``) by the SDK
model the discriminator names. Error bodies against the contract's ``Error`` schema.

``install`` wraps the SDK's vendored ``requests`` ``Session.send``; violations are collected
in ``Recorder.violations`` and the fixtures in this module fail the test that received them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import oci
import pytest
import yaml
from oci._vendor.requests import sessions

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "spec"
CONTRACT_FILE = SPEC_DIR / "oracle-blockstorage-contract.yaml"
API = "/20160918"
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
OCID = {"type": "string", "minLength": 1, "maxLength": 255}


def strict_loads(body: bytes) -> Any:
    """Parse ``body`` as RFC 8259 JSON; raise ValueError for anything Python alone would let
    through (NaN, Infinity, numbers beyond a double, lone surrogates, invalid UTF-8)."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def finite(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"{text} does not fit a double")
        return value

    value = json.loads(body.decode("utf-8"), parse_constant=no_constant, parse_float=finite)
    _no_surrogates(value)
    return value


def _no_surrogates(value: Any) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_surrogates(key)
            _no_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _no_surrogates(item)


def nulls(value: Any, where: str = "$") -> list[str]:
    """The locations of every ``null`` in a parsed JSON value."""
    if value is None:
        return [where]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in nulls(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in nulls(v, f"{where}[{i}]")]
    return []


@dataclass
class Operation:
    name: str
    method: str
    pattern: re.Pattern[str]
    status: int
    response: str | None


@dataclass
class Contract:
    """Oracle's operations and schemas, and the checks of one response against them."""

    operations: list[Operation]
    schemas: dict[str, Any]

    @classmethod
    def load(cls, path: Path = CONTRACT_FILE) -> Contract:
        doc = yaml.safe_load(path.read_text())
        ops = []
        for name, (method, template, status, _h, _body, response, _p) in doc["operations"].items():
            regex = re.sub(r"\{[^}]+\}", "[^/]+", API + template)
            ops.append(Operation(name, method, re.compile(regex), int(status), response))
        return cls(ops, doc["schemas"])

    def operation(self, method: str, path: str) -> Operation | None:
        for op in self.operations:
            if op.method == method and op.pattern.fullmatch(path):
                return op
        return None

    # --- one response ---------------------------------------------------------------------

    def check(self, method: str, path: str, status: int, body: bytes) -> list[str]:
        """Every way this response breaks the contract (empty: it keeps it)."""
        op = self.operation(method, path)
        what = f"{method} {path} -> {status}" + (f" ({op.name})" if op else "")
        if not body:
            if status == 204 or (op is not None and op.response is None and status < 400):
                return []
            return [f"{what}: empty body"]
        try:
            value = strict_loads(body)
        except ValueError as exc:
            return [f"{what}: not strict JSON: {exc}"]
        errors = [f"null at {where}" for where in nulls(value)]
        if status >= 400:
            self.schema(value, "Error", "$", errors)
        elif op is not None:
            if status != op.status:
                errors.append(f"status {status}, the contract says {op.status}")
            if op.response is None:
                errors.append("a body where the contract has none")
            elif op.response.startswith("["):
                if not isinstance(value, list):
                    errors.append(f"$: a {type(value).__name__}, wanted an array")
                else:
                    for n, item in enumerate(value):
                        self.schema(item, op.response[1:-1], f"$[{n}]", errors)
            else:
                self.schema(value, op.response, "$", errors)
        return [f"{what}: {e}" for e in errors]

    # --- schemas --------------------------------------------------------------------------

    def schema(self, value: Any, name: str, where: str, errors: list[str]) -> None:
        if not isinstance(value, dict):
            errors.append(f"{where}: a {type(value).__name__}, wanted a {name} object")
            return
        spec = self.schemas.get(name, {})
        model = getattr(oci.core.models, name, None)
        if model is not None and hasattr(model, "get_subtype"):
            sub = getattr(oci.core.models, model.get_subtype(value), None)
            if sub is not None and sub is not model:
                model, name = sub, sub.__name__
        sdk: dict[str, str] = {}
        if model is not None:
            instance = model()
            sdk = {wire: instance.swagger_types[a] for a, wire in instance.attribute_map.items()}
        props: dict[str, Any] = spec.get("properties", {})
        for key in spec.get("required", []):
            if key not in value:
                errors.append(f"{where}: required {key} missing ({name})")
        for key, item in value.items():
            at = f"{where}.{key}"
            if key in props:
                self.prop(item, props[key], key, at, errors)
            elif key in sdk:
                self.sdk_type(item, sdk[key], at, errors)
            else:
                errors.append(f"{at}: unknown key for {name}")

    def prop(self, value: Any, spec: Any, key: str, where: str, errors: list[str]) -> None:
        if spec == "ocid":
            spec = OCID
        if spec == "tags":
            self.sdk_type(value, "dict(str, str)" if key == "freeformTags" else
                          "dict(str, dict(str, object))", where, errors)
            return
        if isinstance(spec, str):
            self.schema(value, spec, where, errors)
            return
        kind = spec.get("type")
        checks: dict[str, Callable[[Any], bool]] = {
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "array": lambda v: isinstance(v, list),
            "object": lambda v: isinstance(v, dict),
        }
        if kind in checks and not checks[kind](value):
            errors.append(f"{where}: {value!r:.60} is not {kind}")
            return
        if "enum" in spec and value not in spec["enum"]:
            errors.append(f"{where}: {value!r} not in {spec['enum']}")
        if isinstance(value, str):
            if not spec.get("minLength", 0) <= len(value) <= spec.get("maxLength", 1 << 30):
                errors.append(f"{where}: length {len(value)} outside the contract's bounds")
            if spec.get("format") == "date-time":
                rfc3339(value, where, errors)
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if is_int and not spec.get("minimum", -(1 << 63)) <= value <= spec.get("maximum", 1 << 63):
            errors.append(f"{where}: {value} outside the contract's range")
        if isinstance(value, list):
            if len(value) > spec.get("maxItems", 1 << 30):
                errors.append(f"{where}: {len(value)} items, at most {spec['maxItems']}")
            items = spec.get("items")
            for n, item in enumerate(value):
                if items is not None:
                    self.prop(item, items, key, f"{where}[{n}]", errors)

    def sdk_type(self, value: Any, swagger: str, where: str, errors: list[str]) -> None:
        simple: dict[str, Callable[[Any], bool]] = {
            "str": lambda v: isinstance(v, str),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "bool": lambda v: isinstance(v, bool),
            "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "object": lambda v: v is not None,
            "datetime": lambda v: isinstance(v, str),
        }
        if swagger in simple:
            if not simple[swagger](value):
                errors.append(f"{where}: {value!r:.60} is not {swagger}")
            elif swagger == "datetime":
                rfc3339(value, where, errors)
        elif swagger.startswith("dict(str, "):
            if not isinstance(value, dict):
                errors.append(f"{where}: not an object")
                return
            for key, item in value.items():
                self.sdk_type(item, swagger[len("dict(str, "):-1], f"{where}.{key}", errors)
        elif swagger.startswith("list["):
            if not isinstance(value, list):
                errors.append(f"{where}: not an array")
                return
            for n, item in enumerate(value):
                self.sdk_type(item, swagger[5:-1], f"{where}[{n}]", errors)
        else:
            self.schema(value, swagger, where, errors)


def rfc3339(value: str, where: str, errors: list[str]) -> None:
    if not RFC3339.fullmatch(value):
        errors.append(f"{where}: {value!r} is not an RFC 3339 time")
        return
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors.append(f"{where}: {value!r} is not a valid time")


@dataclass
class Recorder:
    """Collects the violations of every response the SDK receives while installed."""

    contract: Contract
    violations: list[str] = field(default_factory=list)
    checked: int = 0
    active: bool = False

    def install(self) -> Callable[[], None]:
        """Wrap ``Session.send`` of the SDK's vendored ``requests``; returns the undo."""
        original = sessions.Session.send
        recorder = self

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            response = original(session, request, **kwargs)
            recorder.observe(request.method, request.url, response)
            return response

        sessions.Session.send = send  # type: ignore[method-assign]

        def undo() -> None:
            sessions.Session.send = original  # type: ignore[method-assign]

        return undo

    def observe(self, method: str, url: str, response: Any) -> None:
        if not self.active:
            return
        path = urlsplit(url).path
        try:
            found = self.contract.check(method, path, response.status_code, response.content)
        except Exception as exc:  # a checker bug must show, not pass silently
            found = [f"{method} {path}: the contract check failed: {exc!r}"]
        self.checked += 1
        self.violations.extend(found)


@pytest.fixture(scope="session")
def contract_recorder() -> Iterator[Recorder | None]:
    """The recorder for the whole session (None when the contract file is not beside the
    repository: then nothing is checked, and a warning says so)."""
    if not CONTRACT_FILE.exists():
        import warnings

        warnings.warn(f"no contract at {CONTRACT_FILE}: responses are not checked", stacklevel=1)
        yield None
        return
    recorder = Recorder(Contract.load())
    undo = recorder.install()
    yield recorder
    undo()


@pytest.fixture(autouse=True)
def contract_check(
    request: pytest.FixtureRequest, contract_recorder: Recorder | None
) -> Iterator[None]:
    """Fail the end-to-end test (tests/e2e, which talk to a real ocibv) during which the SDK
    received a response that breaks the contract. Other tests may talk to fakes: their
    responses are not checked."""
    armed = contract_recorder is not None and "e2e" in Path(str(request.node.path)).parts
    if not armed or contract_recorder is None:
        yield
        return
    seen = len(contract_recorder.violations)
    contract_recorder.active = True
    try:
        yield
    finally:
        contract_recorder.active = False
    if len(contract_recorder.violations) > seen:
        new = contract_recorder.violations[seen:]
        pytest.fail(
            f"{len(new)} response(s) break Oracle's contract:\n  " + "\n  ".join(new[:20]),
            pytrace=False,
        )
