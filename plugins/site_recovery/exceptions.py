"""Exceptions raised by the site recovery integration."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException


class AsrJobError(AirflowException):
    """An ASR job ended in a way the waiting task treats as a failure (or could not be read)."""
