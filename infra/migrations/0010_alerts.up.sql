-- Alerts and notifications: a tenant's alert rules, the alarms they raise (with each alarm's history), webhook
-- subscriptions, and the outbox of webhook deliveries with every attempt made.
--
-- Two new group roles, granted only what their code runs (created only when missing, like migration 0004's):
--
--   sluice_alerter   AlertsFunction (the alert-rules, alarms and webhooks API) and AlertEvaluatorFunction (the
--                    minute's evaluation): keeps rules, alarms and subscriptions, reads the minute rollups and the
--                    sensors' newest readings, and writes deliveries to the outbox in the transaction of the state
--                    change they announce.
--   sluice_notifier  WebhookDispatcherFunction (sends the outbox's deliveries and records each attempt) and
--                    JobEventsFunction (turns a job's change to completed or failed into deliveries).
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['sluice_alerter', 'sluice_notifier'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it a moment ago
            END;
        END IF;
    END LOOP;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sluice_alerter, sluice_notifier', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO sluice_alerter, sluice_notifier;

-- A rule watches the sensors of its tenant that it names: all of them, one system's, or one sensor. A threshold
-- rule compares each minute's average (readings_1m's sum / count) of one unit with its threshold; a silence rule
-- compares the time of a sensor's newest reading (sensor_latest) with the clock. The checks repeat the API's rules
-- (sluice.models.alerts) so that no writer can store a rule the evaluator cannot read.
CREATE TABLE alert_rules (
    id              uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text             NOT NULL CHECK (tenant_id <> ''),
    name            text             NOT NULL CHECK (name <> ''),
    kind            text             NOT NULL CHECK (kind IN ('threshold', 'silent')),
    system_id       uuid,
    sensor_id       uuid,
    severity        text             NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    unit            text,
    condition       text             CHECK (condition IN ('above', 'below')),
    threshold       double precision,
    clear_threshold double precision,
    for_seconds     integer,
    after_seconds   integer,
    created_by      text             NOT NULL,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    CHECK (
        (kind = 'threshold' AND unit IS NOT NULL AND condition IS NOT NULL AND threshold IS NOT NULL
            AND clear_threshold IS NOT NULL AND for_seconds IS NOT NULL AND after_seconds IS NULL
            AND ((condition = 'above' AND clear_threshold < threshold)
                 OR (condition = 'below' AND clear_threshold > threshold)))
        OR (kind = 'silent' AND unit IS NULL AND condition IS NULL AND threshold IS NULL
            AND clear_threshold IS NULL AND for_seconds IS NULL AND after_seconds IS NOT NULL)
    )
);
CREATE INDEX alert_rules_tenant_idx ON alert_rules (tenant_id, created_at, id);

-- One alarm per raising: a rule's sensor may have many alarms over time, and at most one that is not cleared (the
-- partial unique index: re-evaluation, a redelivered schedule or two evaluators at once cannot open a second). The
-- rule's name, kind and severity are copied, so an alarm still reads whole after its rule is changed or deleted.
--
-- trigger_time is data time: the end of the last minute of the window that held (a threshold rule), or the newest
-- reading's time plus the rule's after_seconds (a silence rule). cleared_time is the data time that cleared it. The
-- evaluator starts looking for a new raising after the last alarm's cleared_time, so one excursion raises once.
CREATE TABLE alarms (
    id               uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text             NOT NULL,
    rule_id          uuid             REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule_name        text             NOT NULL,
    kind             text             NOT NULL CHECK (kind IN ('threshold', 'silent')),
    severity         text             NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    system_id        uuid             NOT NULL,
    sensor_id        uuid             NOT NULL,
    unit             text,
    status           text             NOT NULL CHECK (status IN ('active', 'acknowledged', 'cleared')),
    value            double precision,
    trigger_time     timestamptz      NOT NULL,
    raised_at        timestamptz      NOT NULL DEFAULT now(),
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    acknowledge_note text,
    cleared_time     timestamptz,
    cleared_at       timestamptz,
    cleared_reason   text,
    CHECK ((status = 'cleared') = (cleared_at IS NOT NULL)),
    CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
CREATE UNIQUE INDEX alarms_open_idx ON alarms (rule_id, system_id, sensor_id) WHERE status <> 'cleared';
CREATE INDEX alarms_rule_sensor_idx ON alarms (rule_id, system_id, sensor_id, raised_at DESC);
CREATE INDEX alarms_tenant_idx ON alarms (tenant_id, raised_at DESC, id DESC);
CREATE INDEX alarms_tenant_open_idx ON alarms (tenant_id, raised_at DESC, id DESC) WHERE status <> 'cleared';
-- The evaluator reads a tenant's open alarms and those cleared since the first minute it reads (cleared_at, wall
-- time, is never before cleared_time, data time): the rest cannot change its decisions.
CREATE INDEX alarms_tenant_cleared_idx ON alarms (tenant_id, cleared_at) WHERE status = 'cleared';

-- An alarm's history, oldest first: raised, acknowledged, cleared; who did it (a principal, or null for the
-- evaluator) and what was seen.
CREATE TABLE alarm_events (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id  uuid        NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
    event     text        NOT NULL CHECK (event IN ('raised', 'acknowledged', 'cleared')),
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text,
    note      text,
    detail    jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_events_alarm_idx ON alarm_events (alarm_id, id);

-- A subscription: where to send which events.
CREATE TABLE webhooks (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL CHECK (tenant_id <> ''),
    url        text        NOT NULL,
    events     text[]      NOT NULL CHECK (cardinality(events) > 0),
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_tenant_idx ON webhooks (tenant_id, created_at, id);

-- A subscription's signing secret (Standard Webhooks: "whsec_" and the base64 of the key), in a table of its own
-- so that sluice_reader, which reads every other relation, never reads it. The API shows it once, when the
-- subscription is made; only the dispatcher reads it again, to sign.
CREATE TABLE webhook_secrets (
    webhook_id uuid PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
    secret     text NOT NULL CHECK (secret LIKE 'whsec\_%')
);

-- The outbox: one row per subscription and event, written in the transaction of the change it announces. id is the
-- message id sent as webhook-id (the same on every attempt, so a receiver can drop a repeat); event_key names the
-- change ("alarm.raised:<alarm id>", "job.completed:<job id>"), and the unique key makes writing it twice (a
-- redelivered job event) a no-op. body is stored as sent: the signature covers its exact bytes.
CREATE TABLE webhook_deliveries (
    id              text        PRIMARY KEY,
    -- Write order: deliveries due at the same moment go out in it (an alarm raised and cleared in one run).
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    webhook_id      uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    tenant_id       text        NOT NULL,
    event_type      text        NOT NULL,
    event_key       text        NOT NULL,
    body            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (webhook_id, event_key)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, created_at DESC, id);

-- Every attempt and its answer (the status code, or why there was none, and the start of the body).
CREATE TABLE webhook_attempts (
    delivery_id  text        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer     NOT NULL CHECK (attempt > 0),
    at           timestamptz NOT NULL,
    duration_ms  integer     NOT NULL,
    status_code  integer,
    error        text,
    response     text,
    PRIMARY KEY (delivery_id, attempt)
);

-- A delivery written wakes the dispatcher at once (it LISTENs between sends) instead of at its next poll. NOTIFY
-- is sent on commit, so a delivery is never announced before it can be read.
CREATE FUNCTION notify_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sluice_webhook_deliveries', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_webhook_deliveries();

GRANT SELECT, INSERT, UPDATE, DELETE ON alert_rules, alarms, webhooks TO sluice_alerter;
GRANT INSERT ON webhook_secrets TO sluice_alerter;
GRANT SELECT, INSERT ON alarm_events TO sluice_alerter;
GRANT SELECT, INSERT ON webhook_deliveries TO sluice_alerter;
GRANT SELECT ON webhook_attempts TO sluice_alerter;
GRANT SELECT ON systems, readings_1m, sensor_latest TO sluice_alerter;

GRANT SELECT ON webhooks, webhook_secrets TO sluice_notifier;
GRANT SELECT, INSERT ON webhook_deliveries TO sluice_notifier;
GRANT UPDATE (status, attempts, next_attempt_at, delivered_at) ON webhook_deliveries TO sluice_notifier;
GRANT SELECT, INSERT ON webhook_attempts TO sluice_notifier;

-- Everything but the secrets.
GRANT SELECT ON alert_rules, alarms, alarm_events, webhooks, webhook_deliveries, webhook_attempts TO sluice_reader;
