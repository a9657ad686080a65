"""The banner `sentinel serve` prints once it answers: where, and how to try it."""

from __future__ import annotations


def ready_banner(host: str, port: int, processes: int = 1) -> str:
    base = f"http://{host}:{port}"
    json = "-H 'Content-Type: application/json'"
    how = ("(Ctrl-C or SIGTERM stops it gracefully)" if processes == 1 else
           f"with {processes} edge processes (Ctrl-C or SIGTERM stops them gracefully, "
           f"SIGHUP restarts them one at a time)")
    return f"""SentinelStream ready on {base}  {how}
Get a token and screen a payment, from another shell in this folder:
  TOKEN=$(.venv/bin/sentinel token --sub demo --scope admin); H="Authorization: Bearer $TOKEN"
  curl -s -X POST {base}/v1/accounts -H "$H" {json} \\
    -d '{{"account_id": "alice", "currency": "EUR", "home_country": "DE"}}'
  curl -s -X POST {base}/v1/accounts/alice/deposits -H "$H" {json} \\
    -H 'Idempotency-Key: dep-1' -d '{{"amount": "100.00", "currency": "EUR"}}'
  curl -s -X POST {base}/v1/transactions -H "$H" {json} -H 'Idempotency-Key: pay-1' \\
    -d '{{"transaction_id": "t-1", "account_id": "alice", "card_id": "c-1", "merchant_id": "m-1",
         "amount": "12.34", "currency": "EUR", "merchant_category": "grocery_pos",
         "country": "DE", "timestamp": "2026-11-29T10:00:00Z"}}'
More in README.md (API, configuration, stage settings)."""
