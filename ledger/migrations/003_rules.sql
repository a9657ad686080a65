-- Fraud rules as data: every change is a new immutable version; the rule set's version is the
-- id of the last change, so "rules_version" on a transaction names exactly the set it met.
-- Lists (high-risk merchants, ...), analysts' and chargebacks' labels, and which rules hit
-- each transaction (shadow hits included).

CREATE TABLE rules (
    rule_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_]{1,64}$'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE rule_versions (
    change_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id     bigint NOT NULL REFERENCES rules,
    version     integer NOT NULL CHECK (version > 0),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    expression  text NOT NULL CHECK (length(expression) BETWEEN 1 AND 4000),
    action      text NOT NULL CHECK (action IN ('flag', 'decline', 'allow')),
    priority    integer NOT NULL DEFAULT 100,
    status      text NOT NULL CHECK (status IN ('draft', 'shadow', 'active', 'disabled')),
    author      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (rule_id, version)
);
CREATE INDEX rule_versions_latest ON rule_versions (rule_id, change_id DESC);

CREATE TRIGGER rule_versions_append_only BEFORE UPDATE OR DELETE ON rule_versions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER rule_versions_no_truncate BEFORE TRUNCATE ON rule_versions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Lists used by rules: `merchant_id in list('high_risk_merchants')`.
CREATE TABLE list_items (
    list_name  text NOT NULL CHECK (list_name ~ '^[a-z0-9_]{1,64}$'),
    value      text NOT NULL CHECK (length(value) BETWEEN 1 AND 256),
    added_by   text NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (list_name, value)
);

-- Every edge process listens: a change reaches all of them within a second.
CREATE FUNCTION rules_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sentinel_rules', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER rule_versions_notify AFTER INSERT ON rule_versions
    FOR EACH STATEMENT EXECUTE FUNCTION rules_notify_change();
CREATE TRIGGER list_items_notify AFTER INSERT OR DELETE ON list_items
    FOR EACH STATEMENT EXECUTE FUNCTION rules_notify_change();

-- transaction_rule_hits (001) names rule versions by change id.
ALTER TABLE transaction_rule_hits
    ADD CONSTRAINT transaction_rule_hits_change FOREIGN KEY (change_id) REFERENCES rule_versions;

-- Verdicts from analysts and chargebacks; appended, never overwritten (the latest counts).
CREATE TABLE transaction_labels (
    label_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id text NOT NULL REFERENCES transactions,
    label          text NOT NULL CHECK (label IN ('fraud', 'legit')),
    source         text NOT NULL CHECK (source IN ('analyst', 'chargeback', 'import')),
    note           text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    author         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX transaction_labels_latest ON transaction_labels (transaction_id, label_id DESC);
CREATE TRIGGER transaction_labels_append_only BEFORE UPDATE OR DELETE ON transaction_labels
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- Backtests scan by event time.
CREATE INDEX transactions_event_time ON transactions (event_time);
