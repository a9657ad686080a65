-- Validates the constraints migration 009 swapped in. VALIDATE CONSTRAINT scans the table
-- under a SHARE UPDATE EXCLUSIVE lock, which lets payments go on being written meanwhile;
-- this file is its own transaction so that 009's brief exclusive lock is not held during it.

ALTER TABLE accounts VALIDATE CONSTRAINT accounts_account_id_check;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_transaction_id_check;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_card_id_check;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_merchant_id_check;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_merchant_category_check;
ALTER TABLE merchants VALIDATE CONSTRAINT merchants_merchant_id_check;
ALTER TABLE rules VALIDATE CONSTRAINT rules_name_check;
ALTER TABLE list_items VALIDATE CONSTRAINT list_items_list_name_check;
