-- The provider account a connect flow linked (issue 10, item 5): the ID token's (or userinfo's)
-- `sub`, and the email when granted. NULL for imported connections and providers that do not
-- say who signed in.
ALTER TABLE connections ADD COLUMN account_subject TEXT;
ALTER TABLE connections ADD COLUMN account_email TEXT;
