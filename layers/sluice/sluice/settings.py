"""The functions' settings, read from the environment: one model per function, validated once and cached.

This is the only module of the layer that reads ``os.environ`` (through pydantic-settings). A setting a function
cannot run without has no default: a deployed function missing it fails on its first use with an error that names
the variable, rather than quietly using a development value.
"""

from functools import cache
from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sluice.domain.uploads import S3_POST_MAX_BYTES
from sluice.models.api import BULK_REVIEW_MAX


class LambdaRuntimeSettings(BaseSettings):
    """What the Lambda runtime (or the local runtime standing in for it) tells a function about where it runs."""

    model_config = SettingsConfigDict(frozen=True)

    aws_lambda_function_name: str | None = None


class AwsSettings(BaseSettings):
    """Where the AWS APIs are: boto3's own choice in AWS, the moto server locally."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    # Declared (empty) in template.yaml's Globals because ``sam local invoke --env-vars`` only sets variables the
    # template declares; in AWS it stays empty and boto3 finds the real endpoints (or AWS_ENDPOINT_URL itself).
    aws_endpoint_url: str | None = None

    @field_validator("aws_endpoint_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class ScopeSettings(BaseSettings):
    """How the API functions read a token's scopes: every API function has it (template.yaml's Globals)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    # The deployment's Cognito resource server and its "/" (e.g. "sluice/"), which Cognito writes before each
    # custom scope; empty with any other identity provider, whose scopes arrive bare.
    scope_prefix: str = Field(default="", pattern=r"^([\x21\x23-\x5b\x5d-\x7e]+/)?$")


class FunctionDatabaseSettings(BaseSettings):
    """A function's database: in AWS a Secrets Manager secret (RDS's JSON layout); ``SLUICE_DB_DSN`` names one
    directly, for tests and local runs only. One of the two is required."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    db_secret_arn: str | None = Field(default=None, min_length=20)
    db_dsn: str | None = Field(default=None, min_length=1)
    # A hung statement must fail the invocation (and so be retried) rather than eat the Lambda's whole timeout.
    db_statement_timeout_ms: int = Field(default=60_000, gt=0)
    # The CAs that vouch for the database server's certificate (libpq's sslrootcert): "system" is the platform's
    # trust store, for publicly issued certificates; otherwise the path of a PEM file shipped with the function.
    db_sslrootcert: str = Field(default="system", min_length=1)

    @field_validator("db_secret_arn", "db_dsn", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (the template's default for an unset parameter) means "not set".
        return None if value == "" else value

    @model_validator(mode="after")
    def _database_named(self) -> Self:
        if self.db_secret_arn is None and self.db_dsn is None:
            raise ValueError(
                "SLUICE_DB_SECRET_ARN is not set: the function reads its database from that Secrets Manager secret"
                " (the stack's per-role DatabaseSecretArn parameter). SLUICE_DB_DSN may name a database instead,"
                " for local runs only."
            )
        return self


class LoadWorkerSettings(FunctionDatabaseSettings):
    """LoadWorkerFunction: where jobs are, where the database is, and how a file is cut into chunks."""

    jobs_table: str = Field(min_length=3)
    # The queue whose messages the worker extends (its event source; no GetQueueUrl permission needed).
    ingest_queue_url: str = Field(min_length=8)
    # Readings committed per transaction: a retry resumes after the last committed chunk. 50,000 readings hold
    # about 60 MB of parsed rows, which keeps a 1M-row file well under 256 MB.
    chunk_readings: int = Field(default=50_000, ge=1)
    job_retention_days: int = Field(default=90, ge=1)
    # While a long file is worked on, its message is made invisible again this long, at most every heartbeat.
    visibility_timeout_seconds: int = Field(default=1800, ge=30, le=43_200)
    visibility_heartbeat_seconds: int = Field(default=60, ge=0)
    # No new chunk starts with less time than this left: the message is retried instead of being cut off.
    min_remaining_ms: int = Field(default=20_000, ge=0)
    # IngestQueue's redrive maxReceiveCount: a message failing its receive number this high goes to the dead-letter
    # queue next, so the worker fails its jobs first (template.yaml sets both; a test keeps them equal).
    max_receive_count: int = Field(default=5, ge=1, le=1000)


class IngestApiSettings(BaseSettings):
    """IngestApiFunction: where batches and jobs go, whose claims to trust, and the limits it enforces."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    batch_bucket: str = Field(min_length=3)
    jobs_table: str = Field(min_length=3)
    rate_limit_table: str = Field(min_length=3)
    idempotency_table: str = Field(min_length=3)
    # The JWT claim that names the caller's tenant (claims arrive as strings in the request context).
    tenant_claim: str = Field(default="tenant_id", min_length=1)
    rate_limit_requests: int = Field(default=15, ge=1)
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    # 10,000 readings take about 1.4 MB of compact JSON; the limit leaves room for pretty-printed bodies while
    # staying under Lambda's 6 MB synchronous payload. It applies to the body as sent and after decompression.
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    job_retention_days: int = Field(default=90, ge=1)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # The largest file one upload form takes: 5 GiB is the most a single S3 POST may carry.
    upload_max_bytes: int = Field(default=S3_POST_MAX_BYTES, ge=1, le=S3_POST_MAX_BYTES)
    # How long an upload form may be used. A form also stops working when the credentials that signed it (the
    # function's temporary role credentials) expire, which may come first.
    upload_expiry_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)


class ReadLimitSettings(BaseSettings):
    """The per-principal read limit of the functions that answer reads (RateLimitTable, a budget of its own)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    rate_limit_table: str = Field(min_length=3)
    # Reads (GET requests) one principal may make per window: a dashboard polling a few jobs every few seconds fits;
    # a script looping over the API does not, and no longer takes the stage throttle from everyone else.
    read_rate_limit_requests: int = Field(default=120, ge=1)
    rate_limit_window_seconds: int = Field(default=60, ge=1)


class JobStatusSettings(ReadLimitSettings):
    """JobStatusFunction: the jobs table, whose claims to trust and the read limit. No database: it answers while
    TimescaleDB is down or being upgraded."""

    jobs_table: str = Field(min_length=3)
    tenant_claim: str = Field(default="tenant_id", min_length=1)


class QuarantineSettings(FunctionDatabaseSettings, ReadLimitSettings):
    """QuarantineFunction: the database it reviews in, the jobs table whose review counts it keeps, and the read and
    review limits."""

    jobs_table: str = Field(min_length=3)
    tenant_claim: str = Field(default="tenant_id", min_length=1)
    # A review is a handful of short statements; anything slower is a fault, answered 503 and safe to retry.
    db_statement_timeout_ms: int = Field(default=5_000, gt=0)
    # Review requests (POSTs, single or bulk) one principal may make per window.
    review_rate_limit_requests: int = Field(default=30, ge=1)
    # Rows one bulk review may name (ids) or choose (a filter's limit); the API's own bound is the most allowed.
    review_max_rows_per_request: int = Field(default=BULK_REVIEW_MAX, ge=1, le=BULK_REVIEW_MAX)
    # Rows one principal may review in any rolling minute: each row is a transaction on the database.
    review_rows_per_minute: int = Field(default=5_000, ge=1)

    @model_validator(mode="after")
    def _a_full_bulk_review_fits_a_minute(self) -> Self:
        if self.review_rows_per_minute < self.review_max_rows_per_request:
            raise ValueError(
                "SLUICE_REVIEW_ROWS_PER_MINUTE must be at least SLUICE_REVIEW_MAX_ROWS_PER_REQUEST, or a bulk review"
                " of the largest size allowed could never run"
            )
        return self


class SystemsSettings(FunctionDatabaseSettings, ReadLimitSettings):
    """SystemsFunction: the database it registers systems in, whose claims to trust, and the read and write limits."""

    tenant_claim: str = Field(default="tenant_id", min_length=1)
    # A registration is a few short statements and a page's figures a few index scans: anything slower is a fault.
    db_statement_timeout_ms: int = Field(default=5_000, gt=0)
    # Registrations and renames (POST, PATCH) one principal may make per window: an import of hundreds of systems
    # runs at this pace, apart from the principal's reads.
    systems_write_rate_limit_requests: int = Field(default=120, ge=1)


class AlertsSettings(FunctionDatabaseSettings, ReadLimitSettings):
    """AlertsFunction: the database it keeps rules, alarms and subscriptions in (as a member of sluice_alerter), whose
    claims to trust, the read and write limits, each tenant's limits, and which webhook targets are allowed."""

    tenant_claim: str = Field(default="tenant_id", min_length=1)
    # Every request is a few short statements: anything slower is a fault, answered 503 and safe to retry.
    db_statement_timeout_ms: int = Field(default=5_000, gt=0)
    # Changes (POST, PATCH, DELETE, acknowledgements) one principal may make per window, apart from its reads.
    alerts_write_rate_limit_requests: int = Field(default=60, ge=1)
    # Most rules and subscriptions one tenant may have: the evaluator reads every rule each minute, and each
    # subscription multiplies the deliveries of every event.
    alert_rules_max: int = Field(default=1000, ge=1)
    webhooks_max: int = Field(default=20, ge=1)
    # False (AWS): webhook URLs must be https and resolve to public addresses only. True (the twin, the tests):
    # http and loopback addresses are allowed too, so a receiver may run on the machine.
    webhook_allow_local: bool = False


class ReadingsSettings(FunctionDatabaseSettings, ReadLimitSettings):
    """ReadingsFunction: the database it reads readings from (as a member of sluice_reader), whose claims to trust,
    and the read limit."""

    tenant_claim: str = Field(default="tenant_id", min_length=1)
    # A page is one index range scan of at most 10,001 rows (tens of milliseconds): anything slower is a fault.
    db_statement_timeout_ms: int = Field(default=10_000, gt=0)


class HealthSettings(FunctionDatabaseSettings, ReadLimitSettings):
    """HealthFunction: everything its deep check reaches, and the read limit of the deep check."""

    batch_bucket: str = Field(min_length=3)
    jobs_table: str = Field(min_length=3)
    ingest_queue_url: str = Field(min_length=8)
    dead_letter_queue_url: str = Field(min_length=8)
    db_statement_timeout_ms: int = Field(default=3_000, gt=0)


class ConsoleSettings(BaseSettings):
    """ConsoleFunction: how the console signs a person in, and the bucket its upload forms name (for its CSP)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    batch_bucket: str = Field(min_length=3)
    # The OIDC provider's endpoints and the console's public client; all empty: no provider (a token is handed
    # over in the URL's fragment, as `sluice console` does locally).
    console_authorization_url: str = ""
    console_token_url: str = ""
    console_logout_url: str = ""
    console_client_id: str = ""
    console_scopes: str = "openid"
    # Sent as the authorization request's `audience` (Auth0 needs it); empty: not sent.
    console_audience: str = ""
    # The JWT claim that names the tenant (template.yaml's TenantClaim).
    tenant_claim: str = Field(default="tenant_id", min_length=1)
    aws_endpoint_url: str = ""
    # Lambda's own variable: the region the function, and so the stack's bucket, is in.
    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")

    @property
    def has_provider(self) -> bool:
        """Whether a person signs in with the provider (authorization code with PKCE)."""
        return bool(self.console_authorization_url and self.console_token_url and self.console_client_id)


class TokenClaimsSettings(BaseSettings):
    """TokenClaimsFunction, Cognito's pre token generation trigger: where each token's tenant comes from."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    # The operator's mapping of device app clients to tenants (client_id -> tenant_id).
    device_clients_table: str = Field(min_length=3)
    # The claim the API functions read the tenant from (TenantClaim): the trigger writes it.
    tenant_claim: str = Field(default="tenant_id", min_length=1)
    # The user attribute holding a person's tenant; only an administrator may write it.
    tenant_attribute: str = Field(default="custom:tenant_id", min_length=1)


class MaintenanceSettings(FunctionDatabaseSettings):
    """MaintenanceFunction: the readings' and rollups' retention, the stuck-job sweeper and the dead-letter
    backstop. Its secret is the database owner's: only a hypertable's owner may drop its chunks."""

    jobs_table: str = Field(min_length=3)
    # Where a stuck job's S3 event is sent again, and where parked messages are read (never deleted).
    ingest_queue_url: str = Field(min_length=8)
    dead_letter_queue_url: str = Field(min_length=8)
    # Chunks of readings entirely older than this are dropped (unless a TimescaleDB retention policy does it). The
    # reading rules accept readings up to 5 years old: a shorter retention drops old readings they let in.
    retention_years: int = Field(default=5, ge=1, le=100)
    # Chunks of the rollups (readings_1m, readings_1h) entirely older than this are dropped, unless a policy does it.
    # Longer than the readings' retention: the rollups are what remains of readings past theirs.
    rollup_retention_years: int = Field(default=10, ge=1, le=100)
    # A processing job that has not moved for this long is requeued. Longer than IngestQueue's visibility timeout
    # (30 min), after which SQS itself hands a crashed worker's message out again: the sweeper steps in only
    # where no message is left to do that.
    stuck_job_minutes: int = Field(default=45, ge=1)
    # A queued job this old is failed when its batch object is missing (the API stores the object within its 15 s
    # timeout, or never), and requeued once when it is stored (its S3 event was lost); still queued this long after
    # that requeue, it is failed.
    unstored_job_minutes: int = Field(default=15, ge=1)
    # A job still awaiting its upload this long after its form expired is queued (its file is stored: its S3 event
    # was lost) or failed (no file came). The grace lets a POST begun just before the expiry arrive.
    upload_grace_minutes: int = Field(default=15, ge=1)
    # Parked messages are received with this visibility timeout, and made visible again once read.
    dead_letter_visibility_seconds: int = Field(default=30, ge=1, le=300)
    # At most this many parked messages are read per run.
    dead_letter_max_messages: int = Field(default=1000, ge=10)

    @model_validator(mode="after")
    def _rollups_outlive_readings(self) -> Self:
        if self.rollup_retention_years < self.retention_years:
            raise ValueError(
                f"SLUICE_ROLLUP_RETENTION_YEARS ({self.rollup_retention_years}) must be at least"
                f" SLUICE_RETENTION_YEARS ({self.retention_years}): the rollups must outlive the readings they sum,"
                " or a time range would lose its rollups while its readings are still stored"
            )
        return self


class AlertEvaluatorSettings(FunctionDatabaseSettings):
    """AlertEvaluatorFunction: the database it evaluates the tenants' alert rules in (as a member of
    sluice_alerter), and how far back a minute may still raise an alarm."""

    # A raising is looked for only in windows whose last minute started at most this long ago: readings arriving
    # later are stored and shown but raise nothing (docs/architecture.md, "Alerts").
    alert_lookback_minutes: int = Field(default=15, ge=1, le=1440)
    # One tenant's reads are a few index scans per sensor; slower is a fault, and the next tenant goes on.
    db_statement_timeout_ms: int = Field(default=20_000, gt=0)


class JobEventsSettings(FunctionDatabaseSettings):
    """JobEventsFunction: the database whose webhook outbox it writes jobs' announcements to (as a member of
    sluice_notifier)."""

    # One INSERT .. SELECT per finished job of a batch.
    db_statement_timeout_ms: int = Field(default=10_000, gt=0)


def in_lambda_environment() -> bool:
    """Is this process a Lambda execution environment (in AWS, or the local runtime's)?"""
    return LambdaRuntimeSettings().aws_lambda_function_name is not None


@cache
def get_aws_settings() -> AwsSettings:
    """Return where the AWS APIs are, validated on first use."""
    return AwsSettings()


@cache
def get_load_worker_settings() -> LoadWorkerSettings:
    """Return LoadWorkerFunction's settings, validated on first use."""
    return LoadWorkerSettings()


@cache
def get_ingest_api_settings() -> IngestApiSettings:
    """Return IngestApiFunction's settings, validated on first use."""
    return IngestApiSettings()


@cache
def get_job_status_settings() -> JobStatusSettings:
    """Return JobStatusFunction's settings, validated on first use."""
    return JobStatusSettings()


@cache
def get_quarantine_settings() -> QuarantineSettings:
    """Return QuarantineFunction's settings, validated on first use."""
    return QuarantineSettings()


@cache
def get_systems_settings() -> SystemsSettings:
    """Return SystemsFunction's settings, validated on first use."""
    return SystemsSettings()


@cache
def get_alerts_settings() -> AlertsSettings:
    """Return AlertsFunction's settings, validated on first use."""
    return AlertsSettings()


@cache
def get_readings_settings() -> ReadingsSettings:
    """Return ReadingsFunction's settings, validated on first use."""
    return ReadingsSettings()


@cache
def get_health_settings() -> HealthSettings:
    """Return HealthFunction's settings, validated on first use."""
    return HealthSettings()


@cache
def get_maintenance_settings() -> MaintenanceSettings:
    """Return MaintenanceFunction's settings, validated on first use."""
    return MaintenanceSettings()


@cache
def get_scope_settings() -> ScopeSettings:
    """Return how tokens' scopes are read, validated on first use."""
    return ScopeSettings()


@cache
def get_token_claims_settings() -> TokenClaimsSettings:
    """Return TokenClaimsFunction's settings, validated on first use."""
    return TokenClaimsSettings()


@cache
def get_alert_evaluator_settings() -> AlertEvaluatorSettings:
    """Return AlertEvaluatorFunction's settings, validated on first use."""
    return AlertEvaluatorSettings()


@cache
def get_job_events_settings() -> JobEventsSettings:
    """Return JobEventsFunction's settings, validated on first use."""
    return JobEventsSettings()
