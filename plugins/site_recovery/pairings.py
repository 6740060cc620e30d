"""The site's paired clouds as ASR has them: what enable replication and the drill work on.

Both the enable-replication plan and the drill's gate start from the same question (which
primary clouds of the site are paired, and through which fabric, container and policy), so it
is answered once, here, from the vault as the hook reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from site_recovery.exceptions import DeploymentCheckFailed

if TYPE_CHECKING:
    from site_recovery.hooks.asr import AzureSiteRecoveryHook
    from site_recovery.records import PairedCloud, ProtectedItemSummary
    from site_recovery.site import Site


def paired_clouds(hook: AzureSiteRecoveryHook, site: Site) -> list[PairedCloud]:
    """Each pairing of the site file as ASR has it; fails, naming the missing step, when one is not in place."""
    from site_recovery.deployment import container_mapping_of, read_vault
    from site_recovery.records import PairedCloud

    view = read_vault(hook, site)
    if not view.exists:
        raise DeploymentCheckFailed(f"Vault {site.azure.vault_name} does not exist: run asr_deploy__{site.name} first.")
    primary = view.fabric_for(site.primary.vmm)
    if primary is None:
        raise DeploymentCheckFailed(f"Vault {site.azure.vault_name} shows no fabric for {site.primary.vmm.fqdn}: run "
                                    f"asr_deploy__{site.name} first (step 6).")
    clouds = []
    for pairing in site.clouds:
        container = primary.containers.get(pairing.primary_cloud.casefold())
        mapping = container_mapping_of(hook, site, primary, container) if container is not None else None
        if mapping is None:
            raise DeploymentCheckFailed(f"Cloud {pairing.primary_cloud} is not paired with {pairing.recovery_cloud} "
                                        f"in vault {site.azure.vault_name}: run asr_deploy__{site.name} first "
                                        "(step 8).")
        clouds.append(PairedCloud(cloud=pairing.primary_cloud, recovery_cloud=pairing.recovery_cloud,
                                  fabric=primary.name, container=container.name,
                                  policy_id=mapping.properties.policy_id))
    return clouds


def protected_items_in_scope(hook: AzureSiteRecoveryHook, site: Site) -> list[tuple[PairedCloud, ProtectedItemSummary]]:
    """(paired cloud, protected item) of every in-scope protected VM of the site's paired clouds."""
    from site_recovery.hooks.asr import summarize_protected_item

    az, found = site.azure, []
    for cloud in paired_clouds(hook, site):
        for item in hook.list_protected_items(az.resource_group, az.vault_name, cloud.fabric, cloud.container):
            summary = summarize_protected_item(item)
            if site.scope.covers(cloud.cloud, summary.vm or ""):
                found.append((cloud, summary))
    return found
