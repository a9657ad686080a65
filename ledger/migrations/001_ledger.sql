-- The ledger: accounts, screened card payments, balanced journal entries and their postings.
--
-- Append-only: every table below except accounts (whose balance and chain head move) and
-- idempotency_keys (which expire) refuses UPDATE, DELETE and TRUNCATE through triggers, and
-- the service role is granted only SELECT and INSERT on them (see ledger/migrate.py).
-- Tamper evidence: two hash chains per account, one over its postings (money) and one over
-- its screened transactions (decisions, declines included); `sentinel verify-ledger` replays
-- both. Identifiers are restricted to [A-Za-z0-9._:-] so the '|'-joined hash input is
-- unambiguous.

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TABLE accounts (
    account_id            text PRIMARY KEY CHECK (account_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    kind                  text NOT NULL CHECK (kind IN ('cardholder', 'settlement', 'funding')),
    currency              char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    home_country          char(2) CHECK (home_country ~ '^[A-Z]{2}$'),
    home_lat              numeric(9, 6) CHECK (home_lat BETWEEN -90 AND 90),
    home_lon              numeric(9, 6) CHECK (home_lon BETWEEN -180 AND 180),
    overdraft_limit_minor bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit_minor >= 0),
    created_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The moving head of the account, changed only together with a new posting/transaction.
    balance_minor         bigint NOT NULL DEFAULT 0,
    posting_seq           bigint NOT NULL DEFAULT 0,
    posting_hash          bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    txn_seq               bigint NOT NULL DEFAULT 0,
    txn_hash              bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    -- The database itself keeps a cardholder inside its overdraft limit, whatever the caller.
    CONSTRAINT balance_within_limit
        CHECK (kind <> 'cardholder' OR balance_minor >= -overdraft_limit_minor)
);

CREATE TABLE transactions (
    transaction_id      text PRIMARY KEY CHECK (transaction_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    id                  bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    account_id          text NOT NULL REFERENCES accounts,
    account_txn_seq     bigint NOT NULL,
    card_id             text NOT NULL CHECK (card_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    merchant_id         text NOT NULL CHECK (merchant_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
    merchant_category   text NOT NULL CHECK (merchant_category ~ '^[A-Za-z0-9_-]{1,32}$'),
    country             char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    lat                 numeric(9, 6),
    lon                 numeric(9, 6),
    event_time          timestamptz NOT NULL,
    decision            text NOT NULL CHECK (decision IN ('approve', 'flag', 'decline')),
    risk_score          numeric(7, 6) NOT NULL CHECK (risk_score BETWEEN 0 AND 1),
    reasons             text[] NOT NULL,
    rules_version       integer,
    model_version       text,
    balance_after_minor bigint NOT NULL,
    client_id           text NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    prev_hash           bytea NOT NULL,
    hash                bytea NOT NULL,
    UNIQUE (account_id, account_txn_seq)
);
-- History, newest first, by keyset on the identity column.
CREATE INDEX transactions_account_history ON transactions (account_id, id DESC);

-- Which rule versions matched a screened transaction, shadow ones included (the rules
-- themselves live in 003_rules.sql). Declines and flags also carry `rule:<name>` in the
-- hash-chained reasons.
CREATE TABLE transaction_rule_hits (
    transaction_id text NOT NULL REFERENCES transactions,
    change_id      bigint NOT NULL,
    shadow         boolean NOT NULL,
    PRIMARY KEY (transaction_id, change_id)
);

CREATE TABLE journal_entries (
    entry_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('payment', 'deposit')),
    transaction_id text UNIQUE REFERENCES transactions,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((kind = 'payment') = (transaction_id IS NOT NULL))
);

CREATE TABLE postings (
    account_id          text NOT NULL REFERENCES accounts,
    seq                 bigint NOT NULL CHECK (seq > 0),
    entry_id            bigint NOT NULL REFERENCES journal_entries,
    amount_minor        bigint NOT NULL CHECK (amount_minor <> 0),
    balance_after_minor bigint NOT NULL,
    prev_hash           bytea NOT NULL,
    hash                bytea NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX postings_entry ON postings (entry_id);

CREATE TABLE deposits (
    entry_id     bigint PRIMARY KEY REFERENCES journal_entries,
    account_id   text NOT NULL REFERENCES accounts,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    client_id    text NOT NULL
);

-- The final guard of idempotency: one row per (client, key), whatever Redis remembers.
CREATE TABLE idempotency_keys (
    client_id        text NOT NULL,
    idem_key         text NOT NULL,
    fingerprint      bytea NOT NULL,
    transaction_id   text REFERENCES transactions DEFERRABLE INITIALLY DEFERRED,
    deposit_entry_id bigint REFERENCES deposits DEFERRABLE INITIALLY DEFERRED,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (client_id, idem_key),
    CHECK ((transaction_id IS NULL) <> (deposit_entry_id IS NULL))
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transaction_rule_hits_append_only BEFORE UPDATE OR DELETE
    ON transaction_rule_hits FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transaction_rule_hits_no_truncate BEFORE TRUNCATE ON transaction_rule_hits
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER deposits_append_only BEFORE UPDATE OR DELETE ON deposits
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER deposits_no_truncate BEFORE TRUNCATE ON deposits
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
-- Accounts may have their head moved but are never deleted.
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
