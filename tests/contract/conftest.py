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
def credential(lab):
    return lab_credential(lab)


@pytest.fixture
def async_credential(lab):
    return AsyncClientSecretCredential(
        lab["tenant_id"], lab["client_id"], lab["client_secret"], authority=lab["authority_url"],
        connection_verify=lab["ca_cert"], disable_instance_discovery=True,
    )


@pytest.fixture
def asr(lab, credential) -> SiteRecoveryManagementClient:
    with SiteRecoveryManagementClient(credential, lab["subscription_id"], **client_kwargs(lab)) as client:
        yield client


@pytest.fixture
def rsv(lab, credential) -> RecoveryServicesClient:
    with RecoveryServicesClient(credential, lab["subscription_id"], **client_kwargs(lab)) as client:
        yield client


@pytest.fixture
def runbook(lab, asr, rsv) -> Runbook:
    return Runbook(lab, asr, rsv)
