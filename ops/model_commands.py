"""The model's `sentinel` commands: generate, train, evaluate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ops.settings import Settings

if TYPE_CHECKING:
    from rules.engine import RuleSet

# The model packages (scikit-learn, numba, matplotlib: ~1.5 s) are imported by the commands
# that use them, so `sentinel relay`, `worker`, `token` and `migrate` start in a fraction of a
# second. Parser defaults below must match model.train.TrainOptions (a test checks).
TRAIN_DEFAULTS = {"trees": 200, "seed": 42, "target_alert_rate": 0.03}


def _moment_ms(text: str) -> int:
    """`2025-09-01` or an RFC 3339 time -> ms since the epoch (UTC when no offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _generate(settings: Settings, args: argparse.Namespace) -> int:
    from model.data import write_native
    from model.generate import generate

    rows = generate(args.accounts, args.days, args.seed)
    write_native(rows, args.out)
    frauds = sum(1 for r in rows if r.is_fraud)
    print(f"wrote {len(rows)} transactions ({frauds} fraud) to {args.out}")
    return 0


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from model.data import DataError, data_sha256, load
    from model.train import TrainOptions, train

    try:
        rows = load(args.data, args.format)
    except (DataError, OSError) as exc:
        print(f"sentinel train: {exc}", file=sys.stderr)
        return 2
    if args.until is not None:
        rows = [r for r in rows if r.event_ms < args.until]
    options = TrainOptions(n_estimators=args.trees, seed=args.seed,
                           target_alert_rate=args.target_alert_rate)
    try:
        manifest = train(rows, options=options, out=args.out, key=settings.model_key.encode(),
                         data_sha256=data_sha256(args.data))
    except ValueError as exc:
        print(f"sentinel train: {exc}", file=sys.stderr)
        return 2
    print(f"trained {manifest.model_version} on {manifest.data_rows} rows -> {args.out}")
    print(f"proposed flag threshold {manifest.thresholds.flag:.6f} "
          f"(alerts on {manifest.thresholds.target_alert_rate:.2%} of the legitimate training "
          f"rows)")
    print("training metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in manifest.metrics.items()))
    return 0


async def _live_rules(settings: Settings) -> RuleSet:
    from ledger.repository import open_pool
    from rules.engine import RuleSet
    from rules.store import RuleStore

    pool = await open_pool(settings.database_url, min_size=1, max_size=2)
    try:
        store = RuleStore(pool)
        version, rules = await store.live()
        rule_set = RuleSet(version, rules)
        rule_set.attach_lists(await store.load_lists(sorted(rule_set.list_names)))
        return rule_set
    finally:
        await pool.close()


def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from model.artifact import ArtifactError
    from model.data import DataError, load
    from model.evaluate import evaluate, plot
    from model.reload import load_default_model
    from model.scorer import Scorer

    key = settings.model_key.encode()
    try:
        path = args.model or settings.model_path
        flag, decline = settings.model_flag_threshold, settings.model_decline_threshold
        scorer = (Scorer.load(path, key=key, flag_threshold=flag, decline_threshold=decline)
                  if path else load_default_model(settings.model_cache_dir, key=key,
                                                  flag_threshold=flag,
                                                  decline_threshold=decline)[0])
        rows = load(args.data, args.format)
    except (ArtifactError, DataError, OSError) as exc:
        print(f"sentinel evaluate: {exc}", file=sys.stderr)
        return 2
    try:
        rule_set = asyncio.run(_live_rules(settings)) if args.rules == "live" else None
    except (TimeoutError, OSError) as exc:
        print(f"sentinel evaluate: cannot read the live rules ({exc}); start the database "
              f"or pass --rules none", file=sys.stderr)
        return 2
    try:
        report, risk, labels = evaluate(rows, scorer, rule_set, start_ms=args.start)
    except ValueError as exc:
        print(f"sentinel evaluate: {exc}", file=sys.stderr)
        return 2
    print(msgspec.json.format(msgspec.json.encode(report)).decode())
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot(risk, labels, scorer.thresholds.flag, args.plot,
             f"{scorer.version} on {args.data}")
        print(f"plot written to {args.plot}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gen = sub.add_parser("generate", help="write labelled synthetic transactions")
    gen.add_argument("--accounts", type=int, default=200)
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", required=True, help="file to write (native CSV, .gz to compress)")
    gen.set_defaults(run=_generate)
    fmt = {"choices": ("native", "sparkov"), "default": "native"}
    tr = sub.add_parser("train", help="fit the model and write a signed artifact")
    tr.add_argument("--data", required=True)
    tr.add_argument("--format", **fmt)
    tr.add_argument("--out", required=True, help="artifact path (a .manifest.json goes beside)")
    tr.add_argument("--until", type=_moment_ms, help="train only on rows before this time")
    tr.add_argument("--trees", type=int, default=TRAIN_DEFAULTS["trees"])
    tr.add_argument("--seed", type=int, default=TRAIN_DEFAULTS["seed"])
    tr.add_argument("--target-alert-rate", type=float, default=TRAIN_DEFAULTS["target_alert_rate"],
                    help="share of training rows the proposed flag threshold alerts on")
    tr.set_defaults(run=_train)
    ev = sub.add_parser("evaluate", help="replay a labelled file through the decision logic")
    ev.add_argument("--data", required=True)
    ev.add_argument("--format", **fmt)
    ev.add_argument("--model", help="artifact (default: SENTINEL_MODEL_PATH or the default)")
    ev.add_argument("--from", dest="start", type=_moment_ms,
                    help="evaluate rows from this time on; earlier rows only build history")
    ev.add_argument("--rules", choices=("live", "none"), default="live",
                    help="the live rule set from the database, or none (model only)")
    ev.add_argument("--plot", default=".cache/evaluation.png",
                    help="the PNG to write: precision-recall curve and score distributions "
                         "(default %(default)s)")
    ev.add_argument("--no-plot", dest="plot", action="store_const", const=None,
                    help="do not write the PNG")
    ev.set_defaults(run=_evaluate)
