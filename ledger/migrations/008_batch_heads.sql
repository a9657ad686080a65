-- Cardholder heads written once per batch (issue 6), found with perf at 1,000 tx/s:
--
-- * `ExecConstraints` was 19 % of PostgreSQL's CPU in the live pipeline. PostgreSQL 15 builds
--   every CHECK constraint of a table again from its stored text for each statement, and an
--   UPDATE of `accounts` re-checks all eight of them (id, kind, currency, home country, lat,
--   lon, overdraft limit, balance) whatever columns it sets. 007 still ran one UPDATE of the
--   cardholder per payment.
-- * Now the function keeps the new heads of the batch's cardholders in arrays (a cardholder
--   paying twice in a batch reads its head from there, as it read its own UPDATE before) and
--   writes them in one UPDATE when the batch ends, as it already did for the settlement
--   heads. The constraints stay as they are and hold at commit; every row written, its order
--   and every hash are the same as with 007 (`sentinel verify-ledger` checks them).

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
    -- The new heads of the cardholders this batch has touched, written once at its end:
    -- h_ids[h] is an account, the other arrays its head at index h.
    h_ids text[] := '{}';
    h_txn_seq bigint[] := '{}';
    h_txn_hash bytea[] := '{}';
    h_balance bigint[] := '{}';
    h_posting_seq bigint[] := '{}';
    h_posting_hash bytea[] := '{}';
    h integer;
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
        -- Paid earlier in this batch: its head is here, not yet in the table.
        h := array_position(h_ids, acct.account_id);
        IF h IS NULL THEN
            h_ids := h_ids || acct.account_id;
            h := cardinality(h_ids);
        ELSE
            acct.txn_seq := h_txn_seq[h];
            acct.txn_hash := h_txn_hash[h];
            acct.balance_minor := h_balance[h];
            acct.posting_seq := h_posting_seq[h];
            acct.posting_hash := h_posting_hash[h];
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

        h_txn_seq[h] := txn.account_txn_seq;
        h_txn_hash[h] := txn.hash;
        IF txn.decision = 'decline' THEN
            h_balance[h] := acct.balance_minor;
            h_posting_seq[h] := acct.posting_seq;
            h_posting_hash[h] := acct.posting_hash;
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
            h_balance[h] := txn.balance_after_minor;
            h_posting_seq[h] := acct.posting_seq + 1;
            h_posting_hash[h] := c_hash;
        END IF;

        RETURN QUERY SELECT it.ord, 'recorded'::text, txn.transaction_id, txn.decision,
            txn.risk_score, txn.reasons, txn.balance_after_minor, txn.rules_version,
            txn.model_version, acct.currency, txn.recorded_at;
    END LOOP;
    -- Every cardholder's two heads (transactions and postings) in one statement.
    UPDATE accounts a
       SET txn_seq = x.txn_seq, txn_hash = x.txn_hash, balance_minor = x.balance,
           posting_seq = x.posting_seq, posting_hash = x.posting_hash
      FROM unnest(h_ids, h_txn_seq, h_txn_hash, h_balance, h_posting_seq, h_posting_hash)
           AS x(account_id, txn_seq, txn_hash, balance, posting_seq, posting_hash)
     WHERE a.account_id = x.account_id;
    IF s_id IS NOT NULL THEN
        UPDATE accounts SET balance_minor = s_balance, posting_seq = s_seq, posting_hash = s_hash
         WHERE account_id = s_id;
    END IF;
END $$;
