"""S3: where batch objects are stored. Storing one is what enqueues it (S3 event notification to IngestQueue)."""

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from sluice.adapters.aws import s3_client
from sluice.errors import StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef


class S3BatchStore:
    """Puts batch objects into the batch bucket."""

    def __init__(self, bucket: str, client: "S3Client | None" = None) -> None:
        self._bucket = bucket
        self._client = client or s3_client()

    @property
    def bucket(self) -> str:
        """The bucket batches go to."""
        return self._bucket

    def put_batch(self, key: str, body: bytes, *, gzipped: bool, metadata: dict[str, str]) -> None:
        """Store one batch object, keeping gzip bodies compressed and saying so in Content-Encoding."""
        request: PutObjectRequestTypeDef = {
            "Bucket": self._bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
            "Metadata": metadata,
        }
        if gzipped:
            request["ContentEncoding"] = "gzip"
        try:
            self._client.put_object(**request)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"storing s3://{self._bucket}/{key} failed: {exc}") from exc
