-- Posting speed (issue 6), found with perf and pg_stat_user_tables under load:
--
-- * The lock query of `ledger_post_payments` read the whole accounts table for every batch
--   (a hash join over a sequential scan: 21,046 scans reading 36.7 M rows in one benchmark
--   run), so its cost grew with the number of accounts. It now looks the batch's accounts up
--   in the primary key.
-- * The two hash functions were declared IMMUTABLE over a body that is only STABLE (text
--   concatenation of numbers), which stops PostgreSQL from inlining them: every call ran as
--   a separate SQL-function execution, parsed and planned again. STABLE is the truth and
--   lets the planner inline them into PL/pgSQL's cached plans. Same bytes, same hashes.
-- * perf then showed PostgreSQL rebuilding CHECK constraints from text (`ExecConstraints` ->
--   `stringToNode`) for every INSERT and UPDATE the function runs: each statement builds its
--   executor state again. Per approved payment the function ran three UPDATEs of `accounts`
--   (the cardholder's transaction head, its posting head, the settlement head), two posting
--   INSERTs and a rule-hit INSERT even with no hits. Now: one UPDATE of the cardholder (both
--   heads), both postings in one INSERT, the rule-hit INSERT only when there are hits, and
--   the settlement head kept in variables and written once per batch (per currency run).
--   The rows, their order and every hash are the same as before: `sentinel verify-ledger`
--   checks them with the same code.

ALTER FUNCTION ledger_posting_hash(bytea, text, bigint, bigint, bigint, bigint) STABLE;
ALTER FUNCTION ledger_txn_hash(transactions) STABLE;

CREATE OR REPLACE FUNCTION ledger_post_payments(batch jsonb)
RETURNS TABLE (ord integer, status text, transaction_id text, decision text,
               risk_score numeric, reasons text[], balance_after_minor bigint,
               rules_version integer, model_version text, currency char(3),
               recorded_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    it record;
    acct accounts%ROWTYPE;
    prior idempotency_keys%ROWTYPE;
    txn transactions%ROWTYPE;
    fp bytea;
    entry bigint;
    settlement_suffix text;
    -- The head of the settlement account the batch's payments are credited to, kept here and
    -- written once when the batch ends (or its currency changes) instead of once per payment.
    s_id text;  -- NULL: none loaded yet
    s_balance bigint;
    s_seq bigint;
    s_hash bytea;
    s_new_hash bytea;
    c_hash bytea;  -- the cardholder's new posting hash
BEGIN
    -- The settlement side of a currency is spread over 64 accounts `settlement:<CUR>:<n>`, one
    -- picked per database session: concurrent batches then contend only on the cardholder rows
    -- they really share instead of all queueing on one settlement row (see BENCHMARKS.md).
    settlement_suffix := ':' || (pg_backend_pid() % 64)::text;
    INSERT INTO accounts (account_id, kind, currency)
    SELECT DISTINCT 'settlement:' || x.currency || settlement_suffix, 'settlement', x.currency
      FROM jsonb_to_recordset(batch) AS x(currency text)
    ON CONFLICT DO NOTHING;

    -- Lock every account the batch touches in one global order: concurrent batches never
    -- deadlock, and balances cannot move under us.
    -- `= ANY(ARRAY(...))`, not `IN (SELECT ...)`: the planner cannot see how few ids the
    -- batch holds and turned IN into a hash join over a sequential scan of every account.
    PERFORM 1 FROM accounts a
     WHERE a.account_id = ANY (ARRAY(
           SELECT x.account_id FROM jsonb_to_recordset(batch) AS x(account_id text)
           UNION
           SELECT 'settlement:' || x.currency || settlement_suffix
             FROM jsonb_to_recordset(batch) AS x(currency text)))
     ORDER BY a.account_id
       FOR UPDATE;

    FOR it IN
        SELECT e.ord::integer AS ord, x.*
          FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(doc, ord),
               jsonb_to_record(e.doc) AS x(
            client_id text, idem_key text, fingerprint text,
            transaction_id text, account_id text, card_id text, merchant_id text,
            amount_minor bigint, currency text, merchant_category text, country text,
            lat numeric, lon numeric, event_time timestamptz, decision text,
            risk_score numeric, reasons text[], rules_version integer, model_version text,
            hits jsonb)
        ORDER BY e.ord
    LOOP
        fp := decode(it.fingerprint, 'hex');
        INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, transaction_id)
        VALUES (it.client_id, it.idem_key, fp, it.transaction_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            -- Seen before (committed, or earlier in this batch): replay it or refuse it.
            SELECT * INTO prior FROM idempotency_keys k
             WHERE k.client_id = it.client_id AND k.idem_key = it.idem_key;
            IF prior.fingerprint <> fp OR prior.transaction_id IS NULL THEN
                RETURN QUERY SELECT it.ord, 'idempotency_mismatch'::text, it.transaction_id,
                    NULL::text, NULL::numeric, NULL::text[], NULL::bigint, NULL::integer,
                    NULL::text, NULL::char(3), NULL::timestamptz;
            ELSE
                RETURN QUERY SELECT it.ord, 'replay'::text, t.transaction_id, t.decision,
                    t.risk_score, t.reasons, t.balance_after_minor, t.rules_version,
                    t.model_version, a.currency, t.recorded_at
                  FROM transactions t JOIN accounts a USING (account_id)
                 WHERE t.transaction_id = prior.transaction_id;
            END IF;
            CONTINUE;
        END IF;

        SELECT * INTO acct FROM accounts a
         WHERE a.account_id = it.account_id AND a.kind = 'cardholder';
        IF NOT FOUND OR acct.currency <> it.currency
           OR EXISTS (SELECT 1 FROM transactions t WHERE t.transaction_id = it.transaction_id)
        THEN
            -- Nothing is recorded for a refused request: the client may fix it and retry
            -- with the same key.
            DELETE FROM idempotency_keys k
             WHERE k.client_id = it.client_id AND k.idem_key = it.idem_key;
            RETURN QUERY SELECT it.ord,
                CASE WHEN acct.account_id IS NULL THEN 'unknown_account'
                     WHEN acct.currency <> it.currency THEN 'currency_mismatch'
                     ELSE 'transaction_exists' END,
                it.transaction_id, NULL::text, NULL::numeric, NULL::text[], NULL::bigint,
                NULL::integer, NULL::text, acct.currency, NULL::timestamptz;
            CONTINUE;
        END IF;

        txn.decision := it.decision;
        txn.reasons := it.reasons;
        txn.balance_after_minor := acct.balance_minor - it.amount_minor;
        IF txn.decision <> 'decline'
           AND txn.balance_after_minor < -acct.overdraft_limit_minor THEN
            txn.decision := 'decline';
            txn.reasons := txn.reasons || 'insufficient_funds'::text;
        END IF;
        IF txn.decision = 'decline' THEN
            txn.balance_after_minor := acct.balance_minor;
        END IF;

        txn.transaction_id := it.transaction_id;
        txn.account_id := acct.account_id;
        txn.account_txn_seq := acct.txn_seq + 1;
        txn.card_id := it.card_id;
        txn.merchant_id := it.merchant_id;
        txn.amount_minor := it.amount_minor;
        txn.merchant_category := it.merchant_category;
        txn.country := it.country;
        txn.lat := it.lat::numeric(9, 6);
        txn.lon := it.lon::numeric(9, 6);
        txn.event_time := it.event_time;
        txn.risk_score := it.risk_score::numeric(7, 6);
        txn.rules_version := it.rules_version;
        txn.model_version := it.model_version;
        txn.client_id := it.client_id;
        txn.prev_hash := acct.txn_hash;
        txn.hash := ledger_txn_hash(txn);

        INSERT INTO transactions (transaction_id, account_id, account_txn_seq, card_id,
            merchant_id, amount_minor, merchant_category, country, lat, lon, event_time,
            decision, risk_score, reasons, rules_version, model_version,
            balance_after_minor, client_id, prev_hash, hash)
        VALUES (txn.transaction_id, txn.account_id, txn.account_txn_seq, txn.card_id,
            txn.merchant_id, txn.amount_minor, txn.merchant_category, txn.country, txn.lat,
            txn.lon, txn.event_time, txn.decision, txn.risk_score, txn.reasons,
            txn.rules_version, txn.model_version, txn.balance_after_minor, txn.client_id,
            txn.prev_hash, txn.hash)
        RETURNING transactions.recorded_at INTO txn.recorded_at;
        IF it.hits IS NOT NULL AND it.hits <> '[]'::jsonb THEN
            INSERT INTO transaction_rule_hits (transaction_id, change_id, shadow)
            SELECT txn.transaction_id, h.change_id, h.shadow
              FROM jsonb_to_recordset(it.hits) AS h(change_id bigint, shadow boolean);
        END IF;

        IF txn.decision = 'decline' THEN
            UPDATE accounts SET txn_seq = txn.account_txn_seq, txn_hash = txn.hash
             WHERE account_id = acct.account_id;
        ELSE
            INSERT INTO journal_entries (kind, transaction_id)
            VALUES ('payment', txn.transaction_id) RETURNING entry_id INTO entry;
            IF s_id IS DISTINCT FROM 'settlement:' || acct.currency || settlement_suffix THEN
                IF s_id IS NOT NULL THEN
                    UPDATE accounts SET balance_minor = s_balance, posting_seq = s_seq,
                                        posting_hash = s_hash
                     WHERE account_id = s_id;
                END IF;
                s_id := 'settlement:' || acct.currency || settlement_suffix;
                SELECT a.balance_minor, a.posting_seq, a.posting_hash
                  INTO STRICT s_balance, s_seq, s_hash
                  FROM accounts a WHERE a.account_id = s_id;
            END IF;
            -- Both postings of the entry in one statement, cardholder first (the order and
            -- the hash inputs of ledger_append_posting, which deposits still use).
            c_hash := ledger_posting_hash(acct.posting_hash, acct.account_id,
                                          acct.posting_seq + 1, entry, -it.amount_minor,
                                          txn.balance_after_minor);
            s_new_hash := ledger_posting_hash(s_hash, s_id, s_seq + 1, entry, it.amount_minor,
                                              s_balance + it.amount_minor);
            INSERT INTO postings (account_id, seq, entry_id, amount_minor, balance_after_minor,
                                  prev_hash, hash)
            VALUES (acct.account_id, acct.posting_seq + 1, entry, -it.amount_minor,
                    txn.balance_after_minor, acct.posting_hash, c_hash),
                   (s_id, s_seq + 1, entry, it.amount_minor, s_balance + it.amount_minor,
                    s_hash, s_new_hash);
            s_seq := s_seq + 1;
            s_balance := s_balance + it.amount_minor;
            s_hash := s_new_hash;
            -- The cardholder's two heads (transactions and postings) in one UPDATE.
            UPDATE accounts SET txn_seq = txn.account_txn_seq, txn_hash = txn.hash,
                                balance_minor = txn.balance_after_minor,
                                posting_seq = acct.posting_seq + 1, posting_hash = c_hash
             WHERE account_id = acct.account_id;
        END IF;

        RETURN QUERY SELECT it.ord, 'recorded'::text, txn.transaction_id, txn.decision,
            txn.risk_score, txn.reasons, txn.balance_after_minor, txn.rules_version,
            txn.model_version, acct.currency, txn.recorded_at;
    END LOOP;
    IF s_id IS NOT NULL THEN
        UPDATE accounts SET balance_minor = s_balance, posting_seq = s_seq, posting_hash = s_hash
         WHERE account_id = s_id;
    END IF;
END $$;
