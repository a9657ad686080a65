"""Errors of the ledger domain, each with a stable `code` the edge maps to a response.

    LedgerError
    ├── UnknownAccount          account_not_found
    ├── AccountExists           account_exists
    ├── CurrencyMismatch        currency_mismatch
    ├── TransactionExists       transaction_exists
    ├── TransactionNotFound     transaction_not_found
    ├── IdempotencyKeyReused    idempotency_key_reused
    ├── InvalidCursor           invalid_cursor
    └── LedgerUnavailable       ledger_unavailable   (asyncpg/OS errors, converted here)
"""

from __future__ import annotations


class LedgerError(Exception):
    code = "ledger_error"


class UnknownAccount(LedgerError):
    code = "account_not_found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} does not exist")
        self.account_id = account_id


class AccountExists(LedgerError):
    code = "account_exists"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} already exists with other attributes")
        self.account_id = account_id


class CurrencyMismatch(LedgerError):
    code = "currency_mismatch"

    def __init__(self, account_id: str, account_currency: str, currency: str) -> None:
        super().__init__(f"account {account_id!r} holds {account_currency}, "
                         f"the request is in {currency}")
        self.account_id = account_id
        self.account_currency = account_currency
        self.currency = currency


class TransactionExists(LedgerError):
    code = "transaction_exists"

    def __init__(self, transaction_id: str) -> None:
        super().__init__(f"transaction {transaction_id!r} was already recorded "
                         f"under another idempotency key")
        self.transaction_id = transaction_id


class TransactionNotFound(LedgerError):
    code = "transaction_not_found"

    def __init__(self, transaction_id: str) -> None:
        super().__init__(f"transaction {transaction_id!r} does not exist")
        self.transaction_id = transaction_id


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used with a different request")


class InvalidCursor(LedgerError):
    code = "invalid_cursor"

    def __init__(self, cursor: str) -> None:
        super().__init__(f"cursor {cursor!r} is not one this API returned")


class LedgerUnavailable(LedgerError):
    code = "ledger_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the ledger database is unavailable: {reason}")
