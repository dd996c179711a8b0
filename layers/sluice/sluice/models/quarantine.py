"""Quarantine review vocabulary."""

from enum import StrEnum


class ReviewStatus(StrEnum):
    """Where a quarantined reading is in review."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    FIXED = "fixed"


class ReviewAction(StrEnum):
    """What a reviewer can do with a pending row."""

    APPROVE = "approve"
    REJECT = "reject"
    FIX = "fix"
