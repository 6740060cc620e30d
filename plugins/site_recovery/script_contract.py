"""What one PowerShell script in ``include/powershell`` promises: its file, its output, its secrets.

Kept apart from :mod:`site_recovery.hooks.vmm` so that the registry of scripts
(``site_recovery.scripts``) and its tests can use contracts without pulling in pypsrp.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from site_recovery.exceptions import VmmScriptNotFound, VmmScriptOutputError

#: Environment variable that points at the ``include`` folder when it is not next to ``plugins``.
INCLUDE_DIR_ENV = "SITE_RECOVERY_INCLUDE_DIR"
#: Folder of the scripts, inside the ``include`` folder.
POWERSHELL_FOLDER = "powershell"
#: How much of a parameter value the log shows, of a bad output a message quotes, and how many
#: validation errors it lists.
PARAMETER_VALUE_CHARS = 80
OUTPUT_EXCERPT_CHARS = 200
VALIDATION_ERRORS_SHOWN = 3


def include_dir() -> Path:
    """
    Return the ``include`` folder the scripts are read from.

    ``$SITE_RECOVERY_INCLUDE_DIR`` when set; otherwise the ``include`` folder beside ``plugins``,
    as in this repository and in the official image layout (``/opt/airflow/{plugins,include}``).
    Read at every call, so a test or a deployment can move it without re-importing.
    """
    configured = os.environ.get(INCLUDE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / "include"


@dataclass(frozen=True)
class ScriptContract:
    """
    The contract of one script: it writes exactly one JSON document, which ``model`` reads.

    :param name: The script's name, also its file name without ``.ps1`` (``Get-VmmInventory``).
    :param model: The pydantic model of the JSON document the script writes to its output stream.
    :param secret_parameters: Parameters whose values are secrets: sent as SecureString,
        masked in task logs, never shown in messages (matched case-insensitively, as PowerShell does).
    :param safe_to_retry: True when running the script again after it was cut off half-way is
        harmless (it only reads, or it ensures a state). Only then is a connection lost
        mid-run reported as retryable.
    :param file_name: The file in ``include/powershell``; ``<name>.ps1`` by default.
    """

    name: str
    model: type[BaseModel]
    secret_parameters: frozenset[str] = field(default_factory=frozenset)
    safe_to_retry: bool = False
    file_name: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("A script contract needs the script's name.")
        if not (isinstance(self.model, type) and issubclass(self.model, BaseModel)):
            raise TypeError(f"The model of script {self.name} must be a pydantic BaseModel subclass, "
                            f"not {self.model!r}.")
        secrets: Iterable[str] = self.secret_parameters
        if isinstance(secrets, str):
            secrets = (secrets,)
        object.__setattr__(self, "secret_parameters", frozenset(secrets))

    @property
    def path(self) -> Path:
        """Where the script is read from now (see :func:`include_dir`)."""
        return include_dir() / POWERSHELL_FOLDER / (self.file_name or f"{self.name}.ps1")

    def is_secret(self, parameter: str) -> bool:
        """Tell whether ``parameter`` carries a secret."""
        wanted = parameter.casefold()
        return any(secret.casefold() == wanted for secret in self.secret_parameters)

    def describe_parameters(self, parameters: Mapping[str, Any]) -> str:
        """``Cloud=Gold, VaultCredentials=***`` for the log: secrets hidden, long values cut, ``None`` left out."""
        shown = []
        for name, value in parameters.items():
            if value is None:
                continue
            if self.is_secret(name):
                text = "***"
            else:
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                if len(text) > PARAMETER_VALUE_CHARS:
                    text = text[:PARAMETER_VALUE_CHARS] + "..."
            shown.append(f"{name}={text}")
        return ", ".join(shown) or "(none)"

    def read_script(self) -> str:
        """
        Return the script's text, read from disk now.

        :raise VmmScriptNotFound: The file is missing or unreadable.
        """
        path = self.path
        try:
            return path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise VmmScriptNotFound(
                f"PowerShell script {self.name} cannot be read from {path}: {exc.strerror or exc}. "
                f"Scripts are read from the include folder beside plugins/, or from ${INCLUDE_DIR_ENV}."
            ) from exc

    def parse_output(self, outputs: Sequence[Any], where: str, secrets: Iterable[str] = ()) -> BaseModel:
        """
        Read the script's output stream as the one JSON document the contract promises.

        :param outputs: The objects the script wrote to its output stream.
        :param where: Names the run in messages: ``"<script> on <server>"``.
        :param secrets: Values of secret parameters; output containing one is refused, and
            none of them ever shows in a message.
        :raise VmmScriptOutputError: Nothing, several objects, a non-string, a secret, text that
            is not JSON, or JSON that does not match the model.
        """
        model_name = self.model.__name__
        if not outputs:
            raise VmmScriptOutputError(f"{where} wrote nothing to its output stream; it must write exactly "
                                       f"one JSON document ({model_name}), as its last step.")
        if len(outputs) > 1:
            raise VmmScriptOutputError(
                f"{where} wrote {len(outputs)} objects to its output stream "
                f"(first: {_excerpt(outputs[0], secrets)}); it must write exactly one JSON document "
                f"({model_name}). Pipe commands whose output is not wanted to Out-Null."
            )
        (document,) = outputs
        if not isinstance(document, str):
            raise VmmScriptOutputError(
                f"{where} wrote a {type(document).__name__} object, not a JSON string ({model_name}); "
                f"the script must end with ConvertTo-Json -Depth 10 -Compress."
            )
        if any(secret and secret in document for secret in secrets):
            raise VmmScriptOutputError(f"{where} wrote the value of a secret parameter to its output; "
                                       f"refusing to pass it on.")
        try:
            return self.model.model_validate_json(document)
        except ValidationError as exc:  # not chained: pydantic's text quotes the whole output
            raise VmmScriptOutputError(
                f"{where} wrote output that is not a valid {model_name} document: "
                f"{_validation_summary(exc)}. Output began: {_excerpt(document, secrets)}"
            ) from None


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every secret value replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _excerpt(value: Any, secrets: Iterable[str]) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = redact(text, secrets)
    if len(text) > OUTPUT_EXCERPT_CHARS:
        text = text[:OUTPUT_EXCERPT_CHARS] + "..."
    return repr(text)


def _validation_summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if errors and errors[0]["type"] == "json_invalid":
        return f"not JSON ({errors[0]['msg']})"
    shown = [f"{'.'.join(str(part) for part in error['loc']) or '(document)'}: {error['msg']}"
             for error in errors[:VALIDATION_ERRORS_SHOWN]]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more else "")
