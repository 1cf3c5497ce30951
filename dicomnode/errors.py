"""The node's exceptions: one root, specific subclasses whose docstring is the default message."""

from __future__ import annotations


class NodeError(Exception):
    """The DICOM node failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(NodeError):
    """The configuration is not valid."""


class SchemaVersionError(NodeError):
    """The database was created by another version of the node's schema."""


class StorageError(NodeError):
    """A received instance could not be stored."""


class InvalidUIDError(StorageError):
    """A UID in the dataset is missing or not a valid DICOM UID."""


class DiskFullError(StorageError):
    """Not enough free disk space to store the instance."""


class StoreRefused(StorageError):
    """The node refused a received instance."""

    def __init__(self, status: int, reason: str, detail: str | None = None, *,
                 sop_instance_uid: str | None = None) -> None:
        super().__init__(detail)
        self.status = status  # the DICOM status the C-STORE answers with
        self.reason = reason  # a stable word for logs and scripts
        self.detail = detail
        self.sop_instance_uid = sop_instance_uid


class JobLeaseLost(NodeError):
    """The worker no longer holds the lease on its job (it expired and was reclaimed)."""
