-- Identifier CHECK constraints without bounded repetition (issue 6). PostgreSQL's regex engine
-- expands `{1,64}` into 64 states: `x ~ '^[A-Za-z0-9._:-]{1,64}$'` costs ~7 µs a row, against
-- ~0.4 µs for `x ~ '^[A-Za-z0-9._:-]+$' AND char_length(x) <= 64`, which accepts exactly the
-- same strings. Four such checks ran for every transaction row and one for every account head
-- an UPDATE moves: ~30 µs of PostgreSQL CPU per payment, ~12 % of it (BENCHMARKS.md,
-- session 4).
--
-- Each constraint is swapped under its own name, NOT VALID so that the swap is a brief lock
-- and no scan: every existing row passed the old, equivalent check, and every new row is
-- checked. Migration 010 validates them in its own transaction, which lets writes go on
-- while it scans.

ALTER TABLE accounts
    DROP CONSTRAINT accounts_account_id_check,
    ADD CONSTRAINT accounts_account_id_check
        CHECK (account_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(account_id) <= 64) NOT VALID;

ALTER TABLE transactions
    DROP CONSTRAINT transactions_transaction_id_check,
    ADD CONSTRAINT transactions_transaction_id_check
        CHECK (transaction_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(transaction_id) <= 64)
        NOT VALID,
    DROP CONSTRAINT transactions_card_id_check,
    ADD CONSTRAINT transactions_card_id_check
        CHECK (card_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(card_id) <= 64) NOT VALID,
    DROP CONSTRAINT transactions_merchant_id_check,
    ADD CONSTRAINT transactions_merchant_id_check
        CHECK (merchant_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(merchant_id) <= 64) NOT VALID,
    DROP CONSTRAINT transactions_merchant_category_check,
    ADD CONSTRAINT transactions_merchant_category_check
        CHECK (merchant_category ~ '^[A-Za-z0-9_-]+$' AND char_length(merchant_category) <= 32)
        NOT VALID;

ALTER TABLE merchants
    DROP CONSTRAINT merchants_merchant_id_check,
    ADD CONSTRAINT merchants_merchant_id_check
        CHECK (merchant_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(merchant_id) <= 64) NOT VALID;

ALTER TABLE rules
    DROP CONSTRAINT rules_name_check,
    ADD CONSTRAINT rules_name_check
        CHECK (name ~ '^[a-z0-9_]+$' AND char_length(name) <= 64) NOT VALID;

ALTER TABLE list_items
    DROP CONSTRAINT list_items_list_name_check,
    ADD CONSTRAINT list_items_list_name_check
        CHECK (list_name ~ '^[a-z0-9_]+$' AND char_length(list_name) <= 64) NOT VALID;
