"""Suite-wide fixtures: every response the official SDK receives is checked against Oracle's
contract (tests/contract.py)."""

from tests.contract import contract_check, contract_recorder  # noqa: F401  (fixtures)
