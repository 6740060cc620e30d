"""Exceptions raised by the site recovery integration."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class AsrJobError(AirflowException):
    """An ASR job could not be waited on (not named, not readable); retrying may help."""


class AsrJobFailed(AsrJobError, AirflowFailException):
    """An ASR job ended failed, cancelled, partially succeeded or suspended: final, no retry."""


class MalformedAsrAnswer(AirflowFailException):
    """ASR answered with a record missing a field or holding a value ASR never writes: final, no retry."""


class VmmError(AirflowException):
    """A PowerShell script could not be run on a VMM server or Hyper-V host, or broke its contract."""


class VmmTransportError(VmmError):
    """WinRM failed before the script started (or the script is safe to re-run): retrying may help."""


class VmmConnectionError(VmmError, AirflowFailException):
    """WinRM refused the session for a reason a retry will not fix (TLS trust, access denied): final."""


class VmmAuthenticationError(VmmConnectionError):
    """The server rejected the connection's login and password: final, no retry."""


class VmmScriptNotFound(VmmError, AirflowFailException):
    """The script's file is missing from the include folder: final, no retry."""


class VmmScriptError(VmmError, AirflowFailException):
    """The script wrote error records or threw: final, no retry.

    ``errors`` holds the script's own error records (message, position, error id, category).
    """

    def __init__(self, message: str, errors: tuple = ()) -> None:
        super().__init__(message)
        self.errors = tuple(errors)


class VmmScriptInterrupted(VmmError, AirflowFailException):
    """The connection failed or went silent after the script started, so it may have partly run: final."""


class VmmScriptOutputError(VmmError, AirflowFailException):
    """The script's output is not the one JSON document its contract promises: final, no retry."""


class RequestRefused(AirflowFailException):
    """The hook refused to send a request its caller may never make (a drill's failover, say): final."""


class DeploymentCheckFailed(AirflowFailException):
    """A check of the deployment failed (prerequisites, networking, site file vs estate): final, no retry."""


class DeploymentError(AirflowFailException):
    """Azure refused a request for a reason a retry will not fix (validation, authorization): final."""


class DrillFailed(AirflowFailException):
    """The drill did not prove the site can recover: its verdict is FAIL (the report says why)."""


class RecoveryRefused(AirflowFailException):
    """A failover or failback may not start (or go on): the message names each problem; nothing was changed."""


class RecoveryFailed(AirflowFailException):
    """A step of a failover or failback did not reach its goal (a recovered VM fails its checks): final."""


class ApprovalRefused(AirflowFailException):
    """The approver rejected a step of a failover or failback, or nobody answered in time: nothing further runs."""


class ReportStoreUnavailable(AirflowException):
    """The reports store (``[site_recovery] reports_folder``) could not be reached or is not a usable URL;
    retrying may help (the message names the store, never its credentials)."""
