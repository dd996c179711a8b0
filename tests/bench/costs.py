"""What a million readings cost in AWS, from what a bench case used: list prices in one place, and the arithmetic.

A case's ``Usage`` is counted, not guessed: the handlers' billed time and invocations, each API request's body
size, and the AWS calls the handlers made (``CallMeter``'s ``"service.Operation"`` counts). Added to those are the
requests AWS bills that no handler makes, derived from the counts: S3's event message on IngestQueue for every
object stored, and the event source mapping's receive and delete for every worker invocation. ``cost_per_million``
prices them at ``PRICES``; the database is priced apart (``database_cost_per_million``), as instance time and
storage of a self-managed TimescaleDB, and never added into the AWS total. docs/costs.md says how to read them.
"""

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

from ..lambdas import template

# --- The list prices: the only place they are written -------------------------------------------------------

#: The day the prices below were read, from stored copies of the pages each names (there was no live web).
PRICES_READ_ON = date(2026, 12, 5)
#: Their region. The pages state US East (N. Virginia) in text; AWS draws other regions' tables client-side, and no
#: stored copy holds eu-central-1's, the bench's region (docs/costs.md says which may differ there).
PRICES_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Price:
    """A list price: ``usd`` for every ``per`` ``unit``, as the page ``source`` states it."""

    usd: float
    per: int
    unit: str
    source: str

    def of(self, quantity: float) -> float:
        """The price of ``quantity`` units."""
        return quantity / self.per * self.usd


@dataclass(frozen=True, slots=True)
class PriceList:
    """On-demand list prices, free tiers left out (they are per account and month, not per reading)."""

    lambda_arm_gb_second: Price
    lambda_requests: Price
    http_api_requests: Price
    s3_put_requests: Price
    s3_get_requests: Price
    sqs_requests: Price
    dynamodb_write_units: Price
    dynamodb_read_units: Price
    database_instance_hours: Price
    database_storage_gib_months: Price


PRICES = PriceList(
    lambda_arm_gb_second=Price(
        0.0000133334,
        1,
        "GB-second, arm64 (first 7.5 billion a month)",
        "https://cloudchipr.com/blog/aws-lambda-pricing",
    ),
    lambda_requests=Price(0.20, 1_000_000, "requests", "https://cloudchipr.com/blog/aws-lambda-pricing"),
    http_api_requests=Price(
        1.00,
        1_000_000,
        "HTTP API requests of up to 512 KB (first 300 million a month)",
        "https://awsforengineers.com/blog/aws-api-gateway-pricing-explained",
    ),
    s3_put_requests=Price(
        0.005, 1_000, "PUT, COPY, POST, LIST requests (S3 Standard)", "https://c3x.dev/blog/s3-request-fees-explained"
    ),
    s3_get_requests=Price(
        0.0004,
        1_000,
        "GET, SELECT and all other requests (S3 Standard)",
        "https://c3x.dev/blog/s3-request-fees-explained",
    ),
    sqs_requests=Price(
        0.40,
        1_000_000,
        "standard queue requests, each 64 KB of payload one request",
        "https://unanswered.io/guide/aws-sqs-pricing-and-cost-optimization",
    ),
    dynamodb_write_units=Price(
        0.625,
        1_000_000,
        "on-demand write request units (1 KB each)",
        "https://airbyte.com/data-engineering-resources/dynamodb-pricing",
    ),
    dynamodb_read_units=Price(
        0.125,
        1_000_000,
        "on-demand read request units (4 KB strongly consistent)",
        "https://airbyte.com/data-engineering-resources/dynamodb-pricing",
    ),
    database_instance_hours=Price(
        0.0816,
        1,
        "hour of EC2 m7g.large (2 vCPU Graviton3, 8 GiB), Linux, on demand",
        "https://www.factualminds.com/blog/amazon-ec2-on-demand-pricing-instance-families-2026/",
    ),
    database_storage_gib_months=Price(
        0.08,
        1,
        "GB-month of EBS gp3 (3,000 IOPS and 125 MB/s included)",
        "https://menuvis1-blip.github.io/autonomous-researcher/aws/architecture/storage/2026/02/24/amazon-ebs.html",
    ),
)
#: The machine the database time is priced on: RDS and Aurora do not offer TimescaleDB, so it runs self-managed
#: on EC2 (or on Timescale Cloud, priced its own way). Two vCPUs, like the machine the bench measures on.
DATABASE_INSTANCE = "m7g.large"

# --- How AWS meters --------------------------------------------------------------------------------------------

#: An HTTP API request is metered per 512 KB: a 1.2 MB body is three requests.
HTTP_API_METERED_BYTES = 512 * 1024
#: An SQS request is billed once per 64 KB of its payload.
SQS_CHUNK_BYTES = 64 * 1024
#: A write request unit writes up to 1 KB of item; a strongly consistent read unit reads up to 4 KB.
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4 * 1024
#: S3's request classes: these are priced as PUTs, deletes are free, and every other request as a GET.
S3_PUT_CLASS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "ListMultipartUploads",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    }
)
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})
# Single-item requests, priced by the measured item size; every read in Sluice is strongly consistent.
DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
DYNAMODB_READS = frozenset({"GetItem"})
# Requests of several items, priced per item (``Usage.dynamodb_items``); a transaction costs each item twice.
DYNAMODB_MULTI_ITEM = {
    "TransactWriteItems": ("write", 2),
    "BatchWriteItem": ("write", 1),
    "TransactGetItems": ("read", 2),
    "BatchGetItem": ("read", 1),
}

#: The services whose calls are priced. Secrets Manager is asked once per cold start ($0.05 per 10,000 requests):
#: nothing per reading, so its calls are left out.
PRICED_SERVICES = frozenset({"s3", "sqs", "dynamodb", "secretsmanager"})


def template_memory_mb(logical_id: str) -> int:
    """A function's MemorySize in template.yaml: its own, else the Globals' (128, Lambda's default, without)."""
    document = template()
    properties = document["Resources"][logical_id]["Properties"]
    globals_ = document.get("Globals", {}).get("Function", {})
    return int(properties.get("MemorySize", globals_.get("MemorySize", 128)))


def item_size_bytes(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB bills it: each attribute's name plus its value (client-side attribute-value form,
    as ``get_item`` or ``scan`` return it)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind in _SCALAR_BYTES:
        return _SCALAR_BYTES[kind](data)
    if kind in ("SS", "NS", "BS"):
        return sum(_SCALAR_BYTES[kind[0]](member) for member in data)
    if kind == "L":  # 3 bytes, and one per element
        return 3 + sum(1 + _value_bytes(member) for member in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + _value_bytes(member) for name, member in data.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind}")


def _number_bytes(data: Any) -> int:
    """Up to 38 significant digits, two to a byte, plus one."""
    digits = str(data).lstrip("-").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


_SCALAR_BYTES: dict[str, Callable[[Any], int]] = {
    "S": lambda data: len(str(data).encode()),
    "N": _number_bytes,
    "B": len,
    "BOOL": lambda _: 1,
    "NULL": lambda _: 1,
}


# --- What a case used ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class LambdaTally:
    """One function's invocations and their billed duration (each rounded up to the millisecond, as Lambda bills)."""

    function: str
    invocations: int = 0
    billed_s: float = 0.0

    def add(self, seconds: float) -> None:
        """Count one invocation that ran ``seconds``."""
        self.invocations += 1
        # Rounded to the nanosecond first, so that 0.3 s (300.00000000000006 ms in floating point) bills 300 ms.
        self.billed_s += math.ceil(round(seconds * 1000, 6)) / 1000

    @property
    def gb_seconds(self) -> float:
        return template_memory_mb(self.function) / 1024 * self.billed_s if self.invocations else 0.0


@dataclass(slots=True)
class Usage:
    """What one bench case used for ``readings`` readings. ``calls`` are the handlers' own AWS calls (ingest's and
    the worker's), ``uploaded_objects`` the objects clients PUT straight into the bucket (a drop), and
    ``dynamodb_item_bytes`` the size of a job item as stored (``item_size_bytes()`` of a real one): the
    largest item these paths read or write, so every single-item request is priced at it."""

    readings: int
    ingest: LambdaTally = field(default_factory=lambda: LambdaTally("IngestApiFunction"))
    worker: LambdaTally = field(default_factory=lambda: LambdaTally("LoadWorkerFunction"))
    api_request_bytes: list[int] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    uploaded_objects: int = 0
    dynamodb_item_bytes: int = WRITE_UNIT_BYTES
    # Items in each multi-item DynamoDB request ("dynamodb.TransactWriteItems": 40), summed over the calls.
    dynamodb_items: Counter[str] = field(default_factory=Counter)
    # The average body S3 puts on IngestQueue for one object (an s3:ObjectCreated event, about 1 KB).
    queue_message_bytes: int = 1024

    @property
    def objects_stored(self) -> int:
        """Objects written into the bucket: each is an S3 event on IngestQueue."""
        return self.calls["s3.PutObject"] + self.uploaded_objects


class DynamoItemCounter:
    """The items in each multi-item DynamoDB request made through the attached clients, for
    ``Usage.dynamodb_items`` (``CallMeter`` counts the requests, not what each carries)."""

    def __init__(self) -> None:
        self.items: Counter[str] = Counter()
        self._clients: list[Any] = []

    def attach(self, *clients: Any) -> "DynamoItemCounter":
        for client in clients:
            client.meta.events.register("provide-client-params.dynamodb.*", self._count)
            self._clients.append(client)
        return self

    def detach(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("provide-client-params.dynamodb.*", self._count)
        self._clients.clear()

    def _count(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("TransactWriteItems", "TransactGetItems"):
            self.items[f"dynamodb.{model.name}"] += len(params.get("TransactItems", ()))
        elif model.name in ("BatchWriteItem", "BatchGetItem"):
            requests = params.get("RequestItems", {}).values()
            self.items[f"dynamodb.{model.name}"] += sum(
                len(r) if model.name == "BatchWriteItem" else len(r.get("Keys", ())) for r in requests
            )


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """USD per million readings, per component of the AWS bill."""

    lambda_gb_s: float
    lambda_requests: float
    api_gateway: float
    s3: float
    sqs: float
    dynamodb: float

    @property
    def total(self) -> float:
        return float(sum(getattr(self, f.name) for f in fields(self)))

    def as_json(self, case: str) -> dict[str, float]:
        """The figures for .local/bench.json: ``cost_usd_per_million_<case>`` and one key per component."""
        figures = {f"cost_usd_per_million_{case}": self.total}
        figures.update({f"cost_usd_per_million_{case}_{f.name}": getattr(self, f.name) for f in fields(self)})
        return figures


@dataclass(frozen=True, slots=True)
class DatabaseCost:
    """The database's share of a million readings, kept apart from the AWS bill: instance time while it was busy
    with them, and the storage they keep each month."""

    busy_s: float
    stored_bytes: float
    instance_usd: float
    storage_usd_per_month: float

    def as_json(self, case: str) -> dict[str, float]:
        return {
            f"db_busy_s_per_million_{case}": self.busy_s,
            f"db_usd_per_million_{case}_instance": self.instance_usd,
            f"db_bytes_per_million_{case}": self.stored_bytes,
            f"db_usd_per_million_{case}_storage_per_month": self.storage_usd_per_month,
        }


# --- The arithmetic ------------------------------------------------------------------------------------------


def cost_per_million(usage: Usage, prices: PriceList = PRICES) -> CostBreakdown:
    """Price a case's usage at ``prices``, per million readings."""
    if usage.readings <= 0:
        raise ValueError("a case must have loaded readings to be priced per reading")
    scale = 1_000_000 / usage.readings
    _check_priced(usage.calls)
    s3_puts, s3_gets = _s3_requests(usage)
    write_units, read_units = _dynamodb_units(usage)
    invocations = usage.ingest.invocations + usage.worker.invocations
    breakdown = CostBreakdown(
        lambda_gb_s=prices.lambda_arm_gb_second.of(usage.ingest.gb_seconds + usage.worker.gb_seconds),
        lambda_requests=prices.lambda_requests.of(invocations),
        api_gateway=prices.http_api_requests.of(metered_api_requests(usage.api_request_bytes)),
        s3=prices.s3_put_requests.of(s3_puts) + prices.s3_get_requests.of(s3_gets),
        sqs=prices.sqs_requests.of(_sqs_requests(usage)),
        dynamodb=prices.dynamodb_write_units.of(write_units) + prices.dynamodb_read_units.of(read_units),
    )
    return CostBreakdown(**{f.name: getattr(breakdown, f.name) * scale for f in fields(breakdown)})


def metered_api_requests(body_bytes: Iterable[int]) -> int:
    """HTTP API requests as billed: each request one per started 512 KB."""
    return sum(max(1, math.ceil(size / HTTP_API_METERED_BYTES)) for size in body_bytes)


def _s3_requests(usage: Usage) -> tuple[int, int]:
    """PUT-class and GET-class requests: the handlers' own, and the client's PUT of each drop."""
    puts, gets = usage.uploaded_objects, 0
    for operation, count in _operations(usage.calls, "s3"):
        if operation in S3_PUT_CLASS:
            puts += count
        elif operation not in S3_FREE:
            gets += count
    return puts, gets


def _sqs_requests(usage: Usage) -> int:
    """The handlers' own requests (one message or receipt handle each: one 64 KB chunk), and what AWS does on their
    behalf: S3 sends one message per object stored; the event source mapping receives each invocation's messages in
    one ReceiveMessage (billed per 64 KB of them) and deletes them in one DeleteMessageBatch. Its empty polls of an
    idle queue are a fixed amount a month, not a price per reading."""
    requests = sum(count for _, count in _operations(usage.calls, "sqs"))
    messages = usage.objects_stored
    requests += messages
    if usage.worker.invocations:
        received_bytes = messages / usage.worker.invocations * usage.queue_message_bytes
        receives = max(1, math.ceil(received_bytes / SQS_CHUNK_BYTES))
        requests += usage.worker.invocations * (receives + 1)
    return requests


def _dynamodb_units(usage: Usage) -> tuple[int, int]:
    """Write and read request units, every single-item request priced at the measured item size."""
    item_writes = math.ceil(usage.dynamodb_item_bytes / WRITE_UNIT_BYTES)
    item_reads = math.ceil(usage.dynamodb_item_bytes / READ_UNIT_BYTES)
    writes = reads = 0
    for operation, count in _operations(usage.calls, "dynamodb"):
        if operation in DYNAMODB_WRITES:
            writes += count * item_writes
        elif operation in DYNAMODB_READS:
            reads += count * item_reads
        elif operation in DYNAMODB_MULTI_ITEM:
            kind, factor = DYNAMODB_MULTI_ITEM[operation]
            items = usage.dynamodb_items[f"dynamodb.{operation}"]
            if items < count:
                raise ValueError(f"{count} dynamodb.{operation} calls but {items} items: pass Usage.dynamodb_items")
            if kind == "write":
                writes += items * factor * item_writes
            else:
                reads += items * factor * item_reads
        else:
            raise ValueError(f"no price rule for dynamodb.{operation}: add one to tests/bench/costs.py")
    return writes, reads


def _operations(calls: Counter[str], service: str) -> Iterator[tuple[str, int]]:
    """The operations of ``service`` among ``calls``, with their counts."""
    for name, count in calls.items():
        called, operation = name.split(".", 1)
        if called == service:
            yield operation, count


def _check_priced(calls: Counter[str]) -> None:
    """Refuse calls to a service nothing here prices, rather than leaving them out of the bill."""
    for name in calls:
        if name.split(".", 1)[0] not in PRICED_SERVICES:
            raise ValueError(f"no price rule for {name}: add one to tests/bench/costs.py")


def database_cost_per_million(
    busy_s: float, stored_bytes: float, readings: int, prices: PriceList = PRICES
) -> DatabaseCost:
    """The database's price for ``readings`` readings, per million: ``busy_s`` seconds of the database's work on
    them priced as hours of ``DATABASE_INSTANCE``, and ``stored_bytes`` (what the tables grew by, as
    ``hypertable_size`` and ``pg_total_relation_size`` report) priced as gp3 storage for a month."""
    if readings <= 0:
        raise ValueError("a case must have loaded readings to be priced per reading")
    scale = 1_000_000 / readings
    busy = busy_s * scale
    stored = stored_bytes * scale
    return DatabaseCost(
        busy_s=busy,
        stored_bytes=stored,
        instance_usd=prices.database_instance_hours.of(busy / 3600),
        storage_usd_per_month=prices.database_storage_gib_months.of(stored / 2**30),
    )


# --- The report ----------------------------------------------------------------------------------------------

_COLUMNS = (
    ("Lambda GB-s", "lambda_gb_s"),
    ("Lambda req", "lambda_requests"),
    ("API GW", "api_gateway"),
    ("S3", "s3"),
    ("SQS", "sqs"),
    ("DynamoDB", "dynamodb"),
)


def report_lines(
    costs: Mapping[str, CostBreakdown],
    databases: Mapping[str, DatabaseCost] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """A compact table of ``costs`` (case -> breakdown), and the database's lines apart from it. ``labels`` names
    the cases (the case key by default)."""
    labels = labels or {}
    width = max([len(labels.get(case, case)) for case in costs] + [4]) + 2
    lines = [
        f"What a million readings cost in AWS, USD at {PRICES_REGION} list prices read {PRICES_READ_ON.isoformat()} "
        "(free tiers left out; docs/costs.md)",
        f"{'case':<{width}}" + "".join(f"{title:>12}" for title, _ in _COLUMNS) + f"{'total':>10}",
    ]
    for case, cost in costs.items():
        cells = "".join(f"{getattr(cost, name):>12.5f}" for _, name in _COLUMNS)
        lines.append(f"{labels.get(case, case):<{width}}{cells}{cost.total:>10.5f}")
    for case, database in (databases or {}).items():
        lines.append(
            f"database, {labels.get(case, case)} (not in the total): {database.busy_s:,.1f} s busy on "
            f"{DATABASE_INSTANCE} ${database.instance_usd:.5f}; {database.stored_bytes / 1e6:,.0f} MB kept "
            f"${database.storage_usd_per_month:.5f} a month"
        )
    return lines


def prices_json() -> dict[str, Any]:
    """When and where the prices were read, for .local/bench.json."""
    return {"cost_prices_read_on": PRICES_READ_ON.isoformat(), "cost_prices_region": PRICES_REGION}
