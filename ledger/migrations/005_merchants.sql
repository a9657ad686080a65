-- Merchants that receive webhooks, and their signing secrets (issue 5).
-- Configuration, not ledger: the service role may change a merchant's URL, name, category and
-- delivery flag and let an old secret expire (ledger/migrate.py grants exactly that), never
-- delete a row. Secrets are stored as issued (the delivery worker signs with them).

CREATE TABLE merchants (
    merchant_id      text PRIMARY KEY CHECK (merchant_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    category         text,
    webhook_url      text CHECK (webhook_url ~ '^https?://'),
    delivery_enabled boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchant_secrets (
    secret_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants,
    secret      text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);

CREATE INDEX merchant_secrets_by_merchant ON merchant_secrets (merchant_id, secret_id DESC);
