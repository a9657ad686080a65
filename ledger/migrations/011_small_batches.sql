-- Cheaper small batches (issue 6). At 1,000 tx/s a ledger call carries one to three payments,
-- and PostgreSQL spent ~0.8 ms on a call whatever its size. perf and auto_explain on
-- one-payment calls showed three avoidable costs, removed here; the rows, their order, ids,
-- hashes and the answers are what 008 wrote and answered:
-- * the answers were read back by a final query joining the batch's arrays to `transactions`,
--   and the cardholder heads written by a join over six arrays: the best plan of both depends
--   on the arrays' sizes, so PostgreSQL planned them anew on every call (~10 % of its CPU on
--   one-payment calls). The answers are now returned as the loop decides them (RETURN NEXT;
--   a replay reads its transaction there), and a batch with one cardholder moves its heads by
--   key;
-- * the settlement accounts were ensured by an INSERT … ON CONFLICT DO NOTHING on every call;
--   they are now looked up first and inserted only when missing;
-- * `recorded_at` is taken when a payment is decided (clock_timestamp(), as the column's
--   default) so that the answer can carry it without reading the row back.

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
    -- What the batch writes at its end, in the order 007 wrote it.
    new_txns transactions[] := '{}';
    new_txn_ids text[] := '{}';
    new_hits jsonb[] := '{}';  -- per new transaction: its rule hits (or NULL)
    any_hits boolean := false;
    new_entries bigint[] := '{}';  -- journal entry of each non-declined new transaction
    new_entry_txns text[] := '{}';
    new_postings postings[] := '{}';
    posting postings%ROWTYPE;
    entry_seq regclass := pg_get_serial_sequence('journal_entries', 'entry_id')::regclass;
    earlier transactions%ROWTYPE;  -- what a replay answers with
    k integer;
BEGIN
    -- The settlement side of a currency is spread over 64 accounts `settlement:<CUR>:<n>`, one
    -- picked per database session: concurrent batches then contend only on the cardholder rows
    -- they really share instead of all queueing on one settlement row (see BENCHMARKS.md).
    settlement_suffix := ':' || (pg_backend_pid() % 64)::text;
    -- Created on first use. Looked up first: an INSERT that finds its row costs a one-payment
    -- call far more than a read (a scalar subquery: one index probe per currency, whatever
    -- the plan).
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT x.currency
                                FROM jsonb_to_recordset(batch) AS x(currency text)) c
                WHERE (SELECT a.kind FROM accounts a
                        WHERE a.account_id = 'settlement:' || c.currency || settlement_suffix)
                      IS NULL) THEN
        INSERT INTO accounts (account_id, kind, currency)
        SELECT DISTINCT 'settlement:' || x.currency || settlement_suffix, 'settlement',
               x.currency
          FROM jsonb_to_recordset(batch) AS x(currency text)
        ON CONFLICT DO NOTHING;
    END IF;

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
            SELECT * INTO prior FROM idempotency_keys ik
             WHERE ik.client_id = it.client_id AND ik.idem_key = it.idem_key;
            ord := it.ord;
            IF prior.fingerprint <> fp OR prior.transaction_id IS NULL THEN
                status := 'idempotency_mismatch';
                transaction_id := it.transaction_id;
                decision := NULL; risk_score := NULL; reasons := NULL;
                balance_after_minor := NULL; rules_version := NULL; model_version := NULL;
                currency := NULL; recorded_at := NULL;
            ELSE
                -- Committed before, or recorded earlier in this batch: answered from its row.
                k := array_position(new_txn_ids, prior.transaction_id);
                IF k IS NULL THEN
                    SELECT t.* INTO STRICT earlier FROM transactions t
                     WHERE t.transaction_id = prior.transaction_id;
                ELSE
                    earlier := new_txns[k];
                END IF;
                status := 'replay';
                transaction_id := earlier.transaction_id;
                decision := earlier.decision;
                risk_score := earlier.risk_score;
                reasons := earlier.reasons;
                balance_after_minor := earlier.balance_after_minor;
                rules_version := earlier.rules_version;
                model_version := earlier.model_version;
                SELECT a.currency INTO STRICT currency FROM accounts a
                 WHERE a.account_id = earlier.account_id;
                recorded_at := earlier.recorded_at;
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;

        SELECT * INTO acct FROM accounts a
         WHERE a.account_id = it.account_id AND a.kind = 'cardholder';
        IF NOT FOUND OR acct.currency <> it.currency
           OR EXISTS (SELECT 1 FROM transactions t WHERE t.transaction_id = it.transaction_id)
           OR it.transaction_id = ANY (new_txn_ids)
        THEN
            -- Nothing is recorded for a refused request: the client may fix it and retry
            -- with the same key.
            DELETE FROM idempotency_keys ik
             WHERE ik.client_id = it.client_id AND ik.idem_key = it.idem_key;
            ord := it.ord;
            status := CASE WHEN acct.account_id IS NULL THEN 'unknown_account'
                           WHEN acct.currency <> it.currency THEN 'currency_mismatch'
                           ELSE 'transaction_exists' END;
            transaction_id := it.transaction_id;
            decision := NULL; risk_score := NULL; reasons := NULL;
            balance_after_minor := NULL; rules_version := NULL; model_version := NULL;
            currency := acct.currency; recorded_at := NULL;
            RETURN NEXT;
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
        txn.recorded_at := clock_timestamp();  -- not hashed; written as it is answered

        new_txns := new_txns || txn;
        new_txn_ids := new_txn_ids || txn.transaction_id;
        new_hits := new_hits || CASE WHEN it.hits <> '[]'::jsonb THEN it.hits END;
        any_hits := any_hits OR coalesce(it.hits <> '[]'::jsonb, false);

        h_txn_seq[h] := txn.account_txn_seq;
        h_txn_hash[h] := txn.hash;
        IF txn.decision = 'decline' THEN
            h_balance[h] := acct.balance_minor;
            h_posting_seq[h] := acct.posting_seq;
            h_posting_hash[h] := acct.posting_hash;
        ELSE
            entry := nextval(entry_seq);
            new_entries := new_entries || entry;
            new_entry_txns := new_entry_txns || txn.transaction_id;
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
            posting := ROW(acct.account_id, acct.posting_seq + 1, entry, -it.amount_minor,
                           txn.balance_after_minor, acct.posting_hash, c_hash);
            new_postings := new_postings || posting;
            posting := ROW(s_id, s_seq + 1, entry, it.amount_minor, s_balance + it.amount_minor,
                           s_hash, s_new_hash);
            new_postings := new_postings || posting;
            s_seq := s_seq + 1;
            s_balance := s_balance + it.amount_minor;
            s_hash := s_new_hash;
            h_balance[h] := txn.balance_after_minor;
            h_posting_seq[h] := acct.posting_seq + 1;
            h_posting_hash[h] := c_hash;
        END IF;

        ord := it.ord;
        status := 'recorded';
        transaction_id := txn.transaction_id;
        decision := txn.decision;
        risk_score := txn.risk_score;
        reasons := txn.reasons;
        balance_after_minor := txn.balance_after_minor;
        rules_version := txn.rules_version;
        model_version := txn.model_version;
        currency := acct.currency;
        recorded_at := txn.recorded_at;
        RETURN NEXT;
    END LOOP;

    -- The rows, one statement per table, in the order 007 wrote them one by one (identity
    -- ids follow it); foreign keys point backwards, so this order satisfies each of them.
    INSERT INTO transactions (transaction_id, account_id, account_txn_seq, card_id,
        merchant_id, amount_minor, merchant_category, country, lat, lon, event_time,
        decision, risk_score, reasons, rules_version, model_version,
        balance_after_minor, client_id, recorded_at, prev_hash, hash)
    SELECT n.transaction_id, n.account_id, n.account_txn_seq, n.card_id, n.merchant_id,
           n.amount_minor, n.merchant_category, n.country, n.lat, n.lon, n.event_time,
           n.decision, n.risk_score, n.reasons, n.rules_version, n.model_version,
           n.balance_after_minor, n.client_id, n.recorded_at, n.prev_hash, n.hash
      FROM unnest(new_txns) WITH ORDINALITY AS n
     ORDER BY n.ordinality;
    IF any_hits THEN
        INSERT INTO transaction_rule_hits (transaction_id, change_id, shadow)
        SELECT n.transaction_id, h.change_id, h.shadow
          FROM unnest(new_txn_ids, new_hits) WITH ORDINALITY
               AS n(transaction_id, hits, ordinality),
               jsonb_to_recordset(n.hits) AS h(change_id bigint, shadow boolean)
         WHERE n.hits IS NOT NULL
         ORDER BY n.ordinality;
    END IF;
    INSERT INTO journal_entries (entry_id, kind, transaction_id) OVERRIDING SYSTEM VALUE
    SELECT e.entry_id, 'payment', e.transaction_id
      FROM unnest(new_entries, new_entry_txns) WITH ORDINALITY
           AS e(entry_id, transaction_id, ordinality)
     ORDER BY e.ordinality;
    INSERT INTO postings (account_id, seq, entry_id, amount_minor, balance_after_minor,
                          prev_hash, hash)
    SELECT p.account_id, p.seq, p.entry_id, p.amount_minor, p.balance_after_minor,
           p.prev_hash, p.hash
      FROM unnest(new_postings) WITH ORDINALITY AS p
     ORDER BY p.ordinality;
    -- Every cardholder's two heads (transactions and postings) in one statement. One head
    -- (the common small batch) by its key: the join's plan depends on the arrays' sizes, so
    -- PostgreSQL planned it anew for every call.
    IF cardinality(h_ids) = 1 THEN
        UPDATE accounts a
           SET txn_seq = h_txn_seq[1], txn_hash = h_txn_hash[1], balance_minor = h_balance[1],
               posting_seq = h_posting_seq[1], posting_hash = h_posting_hash[1]
         WHERE a.account_id = h_ids[1];
    ELSIF cardinality(h_ids) > 1 THEN
        UPDATE accounts a
           SET txn_seq = x.txn_seq, txn_hash = x.txn_hash, balance_minor = x.balance,
               posting_seq = x.posting_seq, posting_hash = x.posting_hash
          FROM unnest(h_ids, h_txn_seq, h_txn_hash, h_balance, h_posting_seq, h_posting_hash)
               AS x(account_id, txn_seq, txn_hash, balance, posting_seq, posting_hash)
         WHERE a.account_id = x.account_id;
    END IF;
    IF s_id IS NOT NULL THEN
        UPDATE accounts SET balance_minor = s_balance, posting_seq = s_seq, posting_hash = s_hash
         WHERE account_id = s_id;
    END IF;

    RETURN;
END $$;
