"""One API call: the authenticated caller, the raw body, and typed access to its parameters.

Parsing failures become OCI errors naming the parameter: 400 ``CannotParseRequest`` for a body
that is not JSON (RFC 8259), ``InvalidParameter`` / ``MissingParameter`` for bad or absent
values. Python's JSON reader is lenient where the RFC is not: ``NaN``, ``Infinity`` and numbers
too large for a double (``1e400``), and strings holding lone UTF-16 surrogates (``"\\ud800"``),
are refused with ``InvalidParameter`` naming the field, so that nothing stored can make a
later response invalid JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from ocibv.domain import limits
from ocibv.domain.errors import (
    CannotParseRequest,
    InvalidParameter,
    MissingParameter,
)
from ocibv.services.context import Caller
from ocibv.services.listing import ListRequest

M = TypeVar("M", bound=BaseModel)


@dataclass
class Call:
    request: Request
    caller: Caller
    body: bytes
    request_id: str

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    @property
    def if_match(self) -> str | None:
        return self.header("if-match")

    @property
    def retry_token(self) -> str | None:
        token = self.header("opc-retry-token")
        if token is not None and not 1 <= len(token) <= limits.MAX_RETRY_TOKEN:
            raise InvalidParameter(
                f"opc-retry-token: must be 1 to {limits.MAX_RETRY_TOKEN} characters long."
            )
        return token

    # --- body -------------------------------------------------------------------------------

    def json_object(self) -> dict[str, Any]:
        if not self.body.strip():
            raise MissingParameter("The request body is empty; a JSON object is required.")
        try:
            value = json.loads(self.body, parse_constant=_NonFinite, parse_float=_parse_float)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CannotParseRequest(f"The request body is not valid JSON: {exc}") from exc
        except RecursionError:  # absurdly deep nesting; no OCI body is nested this deep
            raise CannotParseRequest("The request body is nested too deeply.") from None
        if not isinstance(value, dict):
            raise CannotParseRequest("The request body must be a JSON object.")
        check_strict(value)
        return value

    def model(self, model: type[M]) -> tuple[M, dict[str, Any]]:
        """The body validated as ``model``, and the raw JSON object."""
        raw = self.json_object()
        return validate(model, raw), raw

    # --- query ------------------------------------------------------------------------------

    def query(self, name: str, *, required: bool = False, max_length: int = 4096) -> str | None:
        """The one value of query parameter ``name`` (1 to ``max_length`` characters), or
        None when absent."""
        values = self.request.query_params.getlist(name)
        if len(values) > 1:
            raise InvalidParameter(f"{name}: given more than once.")
        if not values:
            if required:
                raise MissingParameter(f"{name}: this query parameter is required.")
            return None
        value = values[0]
        if value == "" or len(value) > max_length:
            raise InvalidParameter(f"{name}: must be 1 to {max_length} characters long.")
        return value

    def query_enum(self, name: str, allowed: Sequence[str], *, upper: bool = False) -> str | None:
        value = self.query(name)
        if value is None:
            return None
        if upper:
            value = value.upper()
        if value not in allowed:
            raise InvalidParameter(f"{name}: {value!r} is not one of {', '.join(allowed)}.")
        return value

    def query_int(self, name: str, low: int, high: int) -> int | None:
        value = self.query(name)
        if value is None:
            return None
        # isascii: str.isdigit() also accepts digits int() cannot read ("²") or other scripts.
        if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
            raise InvalidParameter(f"{name}: must be an integer from {low} to {high}.")
        return int(value)

    def query_bool(self, name: str) -> bool | None:
        value = self.query(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise InvalidParameter(f"{name}: must be true or false.")
        return value.lower() == "true"

    def list_request(
        self,
        filters: dict[str, Any],
        *,
        states: Sequence[str] | None = None,
        sort_fields: Sequence[str] = ("TIMECREATED", "DISPLAYNAME"),
    ) -> ListRequest:
        """Standard list parameters: limit, page, sortBy, sortOrder (+ lifecycleState)."""
        if states is not None:
            filters["lifecycle_state"] = self.query_enum("lifecycleState", states, upper=True)
        sort_by = self.query_enum("sortBy", sort_fields)
        if sort_by == "NAME":
            sort_by = "DISPLAYNAME"
        return ListRequest(
            filters=filters,
            sort_by=sort_by,
            sort_order=self.query_enum("sortOrder", ("ASC", "DESC")),
            limit=self.query_int("limit", 1, limits.MAX_LIMIT) or limits.DEFAULT_LIMIT,
            page=self.query("page"),
        )


class _NonFinite(str):
    """What ``NaN``/``Infinity``/``-Infinity`` parse to, to be refused with its location."""


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _problem(value: Any) -> str | None:
    if isinstance(value, _NonFinite):
        return f"{value} is not a JSON number (RFC 8259 numbers are finite)"
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone UTF-16 surrogate, which is not a Unicode character"
    return None


def check_strict(value: Any, where: str = "") -> None:
    """Raise InvalidParameter naming the first key or value that RFC 8259 (and Unicode) do not
    allow: a non-finite number or a string with a lone surrogate."""
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{where}.{key}" if where else str(key)
            problem = _problem(key)
            if problem:
                raise InvalidParameter(f"{where or 'body'}: a key {problem}.")
            check_strict(item, at)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            check_strict(item, f"{where}.{n}" if where else str(n))
    else:
        problem = _problem(value)
        if problem:
            raise InvalidParameter(f"{where or 'body'}: {problem}.")


def validate(model: type[M], raw: dict[str, Any]) -> M:
    """Validate a JSON object; the first problem becomes an OCI error naming its field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        if error["type"] == "missing":
            field = (error.get("ctx") or {}).get("field")
            where = f"{where}.{field}" if field else where
            raise MissingParameter(f"{where}: this field is required.") from None
        raise InvalidParameter(f"{where}: {error['msg']}.") from None
