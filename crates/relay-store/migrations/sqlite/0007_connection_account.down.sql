-- Reverts 0007_connection_account.
ALTER TABLE connections DROP COLUMN account_email;
ALTER TABLE connections DROP COLUMN account_subject;
