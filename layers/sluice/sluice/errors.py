"""Every exception Sluice raises on purpose. Invalid readings are values, not exceptions."""


class SluiceError(Exception):
    """Base of Sluice's own errors."""


class MigrationError(SluiceError):
    """The migrations on disk and the versions recorded in the database cannot be reconciled."""


class MigrationFileError(MigrationError):
    """A migration file is missing, misnamed or unpaired."""


class MigrationChecksumError(MigrationError):
    """An applied migration's file has changed since it was applied."""
