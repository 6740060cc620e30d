"""Contract tests: the real Azure SDK clients against the lab's ARM surface over HTTPS.

They run against the real lab process (the ``lab`` fixture of tests/conftest.py:
``asr-lab serve`` at time scale 0, Entra ID token endpoint, bearer check) and use only what
``asr_lab.client.LabClient`` offers.
"""

from __future__ import annotations

import pytest
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicessiterecovery import SiteRecoveryManagementClient

from tests.labflows import Runbook, client_kwargs
from tests.labflows import credential as lab_credential


@pytest.fixture
def arm_lab(lab):
    """The lab for one contract test, reset to the bare estate (no vault, no faults)."""
    return lab


@pytest.fixture
def credential(arm_lab):
    return lab_credential(arm_lab)


@pytest.fixture
def async_credential(arm_lab):
    return AsyncClientSecretCredential(
        arm_lab["tenant_id"], arm_lab["client_id"], arm_lab["client_secret"], authority=arm_lab["authority_url"],
        connection_verify=arm_lab["ca_cert"], disable_instance_discovery=True,
    )


@pytest.fixture
def asr(arm_lab, credential) -> SiteRecoveryManagementClient:
    with SiteRecoveryManagementClient(credential, arm_lab["subscription_id"], **client_kwargs(arm_lab)) as client:
        yield client


@pytest.fixture
def rsv(arm_lab, credential) -> RecoveryServicesClient:
    with RecoveryServicesClient(credential, arm_lab["subscription_id"], **client_kwargs(arm_lab)) as client:
        yield client


@pytest.fixture
def runbook(arm_lab, asr, rsv) -> Runbook:
    return Runbook(arm_lab, asr, rsv)
