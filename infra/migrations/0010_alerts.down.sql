-- The alerts go whole: rules, alarms and their history, subscriptions, the outbox and its attempts. The roles stay
-- (they are the cluster's, and another database may still use them); their grants here go with the tables.
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP FUNCTION notify_webhook_deliveries();
DROP TABLE webhook_secrets;
DROP TABLE webhooks;
DROP TABLE alarm_events;
DROP TABLE alarms;
DROP TABLE alert_rules;
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM sluice_alerter, sluice_notifier', current_database());
END
$$;
REVOKE USAGE ON SCHEMA public FROM sluice_alerter, sluice_notifier;
REVOKE SELECT ON systems, readings_1m, sensor_latest FROM sluice_alerter;
