"""Why a job failed, as its client reads it: a fixed sentence and an error id. What went wrong in detail (exception
text, bucket and key names, the moment it stalled) goes to the logs under the same id, never into the job record,
which every token of the tenant can read."""

from dataclasses import dataclass
from uuid import uuid4


@dataclass(frozen=True, slots=True)
class JobFailure:
    """A job's failure: the sentence its client reads, the id that finds it in the logs, and the logs' detail."""

    sentence: str
    error_id: str
    # For the logs only.
    detail: str = ""

    @property
    def message(self) -> str:
        """The job's ``error_message``: the sentence and the error id, nothing else."""
        return f"{self.sentence} Quote error id {self.error_id} to support."


def new_error_id() -> str:
    """A new error id: 16 hex digits, enough to find one failure among all the logs hold."""
    return uuid4().hex[:16]


def job_failure(sentence: str, detail: str = "") -> JobFailure:
    """A failure with a new error id."""
    return JobFailure(sentence, new_error_id(), detail)
