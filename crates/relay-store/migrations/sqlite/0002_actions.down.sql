DROP TABLE IF EXISTS webhook_secrets;
DROP TABLE IF EXISTS action_executions;
DROP TABLE IF EXISTS action_previews;
