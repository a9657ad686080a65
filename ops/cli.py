"""The `sentinel` command: serve, migrate, token, verify-ledger, generate, train, evaluate,
relay, worker."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import asyncpg
import msgspec
import uvloop

from http_edge.auth import SCOPES, TokenIssuer
from ledger.migrate import migrate
from ledger.verify import verify_ledger
from ops.model_commands import add_commands
from ops.settings import Settings, SettingsError, load_settings
from ops.workers import add_commands as add_worker_commands


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.port is not None:
        settings = msgspec.structs.replace(settings, http_port=args.port)
    if args.ready_fd is None and settings.processes > 1:
        from ops.supervisor import Supervisor

        return asyncio.run(Supervisor(settings).serve())
    # Imported here: the edge loads the model packages (~1.5 s) that other commands (and the
    # supervisor) never need.
    from ops.application import Application
    from ops.supervisor import Supervision

    supervision = None if args.ready_fd is None else Supervision(
        listen_fds=tuple(args.listen_fd), ready_fd=args.ready_fd, metrics_dir=args.metrics_dir)
    uvloop.run(Application(settings, supervision=supervision).serve())
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(migrate(settings.admin_database_url, settings.database_url))
    print("migrations applied: " + (", ".join(applied) if applied else "none (up to date)"))
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    try:
        issuer = TokenIssuer(settings.jwt_secret, issuer=settings.jwt_issuer,
                             audience=settings.jwt_audience)
        print(issuer.issue(args.sub, args.scope, ttl_s=args.ttl))
    except ValueError as exc:
        print(f"sentinel token: {exc}", file=sys.stderr)
        return 2
    return 0


async def _verify(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        report = await verify_ledger(conn)
    finally:
        await conn.close()
    for problem in report.problems:
        print(f"MISMATCH {problem}")
    print(f"verified {report.accounts} accounts, {report.postings} postings, "
          f"{report.transactions} transactions: "
          f"{'OK' if report.ok else f'{len(report.problems)} problem(s)'}")
    return 0 if report.ok else 1


def _verify_ledger(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_verify(settings.database_url))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sentinel", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API in the foreground")
    serve.add_argument("--port", type=int, help="override SENTINEL_HTTP_PORT")
    # Given by ops/supervisor.py to the edge processes it starts, never by hand.
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--listen-fd", type=int, action="append", default=[],
                       help=argparse.SUPPRESS)
    serve.add_argument("--metrics-dir", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)
    sub.add_parser("migrate", help="create/upgrade the database").set_defaults(run=_migrate)
    token = sub.add_parser("token", help="print a signed JWT for the configured key")
    token.add_argument("--sub", required=True, help="the client identity (token subject)")
    token.add_argument("--scope", action="append", required=True, choices=sorted(SCOPES),
                       help="a scope to grant; repeat for several")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(run=_token)
    verify = sub.add_parser("verify-ledger",
                            help="recompute every hash chain and balance; non-zero on mismatch")
    verify.set_defaults(run=_verify_ledger)
    add_commands(sub)
    add_worker_commands(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"sentinel: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    code: int = args.run(settings, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
