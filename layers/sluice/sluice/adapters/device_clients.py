"""DynamoDB: the operator's mapping of device app clients (client credentials) to tenants."""

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from sluice.adapters.aws import dynamodb_client
from sluice.errors import StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class DynamoDeviceClients:
    """template.yaml's DeviceClientsTable: ``client_id`` (key) -> ``tenant_id``, written by the operator only."""

    def __init__(self, table: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table
        self._client = client or dynamodb_client()

    def tenant_of(self, client_id: str) -> str | None:
        """The client's tenant. Read consistently: a mapping the operator just removed issues no further token."""
        try:
            answer = self._client.get_item(
                TableName=self._table,
                Key={"client_id": {"S": client_id}},
                ProjectionExpression="tenant_id",
                ConsistentRead=True,
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"reading the device clients table failed: {exc}") from exc
        return answer.get("Item", {}).get("tenant_id", {}).get("S")
