"""Limits that the API's models and the domain share, below both so that neither imports the other for them."""

from typing import Final

# A batch carries 1 to 10,000 readings: about 1.4 MB of compact JSON at most, under Lambda's 6 MB payload.
MIN_READINGS_PER_BATCH: Final = 1
MAX_READINGS_PER_BATCH: Final = 10_000
# Error details echo names a client sent (an unknown field can be megabytes long): at most this many characters.
DETAIL_FIELD_MAX: Final = 200
DETAIL_REASON_MAX: Final = 1000
# And at most this many details: a body can name a hundred thousand unknown fields.
MAX_ERROR_DETAILS: Final = 20
# Lambda answers at most 6,291,556 bytes (its "6 MB"): a listing page's items take at most this many bytes of that
# answer, which leaves room for the page's envelope, the headers and the status around them.
PAGE_BYTES_MAX: Final = 5 * 1024 * 1024
# A quarantined reading keeps its raw text up to this many bytes (as stored JSON); a longer one keeps its start, with
# the size and SHA-256 of the whole, so that every quarantine row stays small enough to list and to hold in memory.
MAX_RAW_BYTES: Final = 16 * 1024
