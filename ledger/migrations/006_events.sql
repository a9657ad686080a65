-- Status events for merchants and the fraud team (issue 5): the ledger is the outbox.
--
-- Every screened transaction is already an append-only, committed row; its event
-- (`transaction.approved|flagged|declined`, id `evt_<transaction_id>`) is derived from it, so
-- the event commits in the same database transaction as the ledger record at no extra write
-- on the payment path. What an outbox table adds is a commit order, which an identity column
-- does not give (ids are taken at INSERT, transactions commit in another order). `txid` is
-- the writing transaction's id: every row whose txid is below the oldest transaction still
-- running (`pg_snapshot_xmin`) is committed or gone for good, so the relay reads in
-- (txid, id) order up to that horizon and its cursor can never skip a late commit.
-- The ALTER rewrites the table (the default is volatile): existing rows get this
-- migration's txid, and the cursors below start after them.

ALTER TABLE transactions ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX transactions_outbox ON transactions (txid, id);

-- A merchant's request to deliver an event again (POST /v1/events/{id}/replay). Committed
-- first and published by the relay like any event, so a replay accepted during a broker
-- outage is not lost either.
CREATE TABLE webhook_replays (
    replay_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    transaction_id text NOT NULL REFERENCES transactions,
    requested_by   text NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_replays_outbox ON webhook_replays (txid, replay_id);

-- Where the relay leader stands in each source: everything at or before (txid, id) has been
-- confirmed by the broker. Only the leader (advisory lock) moves it.
CREATE TABLE relay_cursors (
    source     text PRIMARY KEY CHECK (source IN ('transactions', 'replays')),
    txid       xid8 NOT NULL,
    id         bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_cursors (source, txid, id)
SELECT 'transactions', pg_current_xact_id(), coalesce(max(id), 0) FROM transactions
UNION ALL
SELECT 'replays', pg_current_xact_id(), 0;

-- Every delivery attempt of a webhook, as it happened (append-only, like the ledger).
-- outcome: delivered (2xx), retry (failed, another attempt is scheduled), failed (failed,
-- no attempt left: the message went to the dead-letter queue), gone (410: the merchant's
-- delivery was disabled), skipped (the merchant had no URL or delivery disabled by then).
CREATE TABLE webhook_attempts (
    attempt_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       text NOT NULL,
    transaction_id text NOT NULL REFERENCES transactions,
    merchant_id    text NOT NULL,
    replay_id      bigint REFERENCES webhook_replays,
    attempt        integer NOT NULL CHECK (attempt > 0),
    url            text,
    attempted_at   timestamptz NOT NULL,
    status_code    integer,
    latency_ms     double precision,
    error          text,
    outcome        text NOT NULL
        CHECK (outcome IN ('delivered', 'retry', 'failed', 'gone', 'skipped')),
    next_attempt_at timestamptz
);
CREATE INDEX webhook_attempts_by_event ON webhook_attempts (transaction_id, attempt_id);
CREATE INDEX webhook_attempts_by_merchant ON webhook_attempts (merchant_id, attempt_id DESC);

-- Alert e-mails sent to the fraud team: one row per mail (a digest covers several events).
CREATE TABLE alert_mails (
    mail_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sent_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    recipients  text[] NOT NULL,
    subject     text NOT NULL,
    event_ids   text[] NOT NULL
);

CREATE TRIGGER webhook_replays_append_only BEFORE UPDATE OR DELETE ON webhook_replays
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER webhook_replays_no_truncate BEFORE TRUNCATE ON webhook_replays
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER webhook_attempts_append_only BEFORE UPDATE OR DELETE ON webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER webhook_attempts_no_truncate BEFORE TRUNCATE ON webhook_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER alert_mails_append_only BEFORE UPDATE OR DELETE ON alert_mails
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER alert_mails_no_truncate BEFORE TRUNCATE ON alert_mails
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
