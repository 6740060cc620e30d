"""
Airflow plugin entry for the site recovery integration.

The distribution ``asr-site-recovery`` (``plugins/site_recovery/pyproject.toml``) registers
:class:`SiteRecoveryPlugin` under the ``airflow.plugins`` entry point, so this is the only module of
the package the plugin manager imports; ``plugins/.airflowignore`` keeps the plugins-folder scan
away from the package's files. Keep this module's imports to Airflow's own: whatever it imports is
imported by the scheduler, the API server and every other component at start-up
(``tests/unit/test_plugin_loading.py`` checks that no ``azure`` module and no other product module
comes with it).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class SiteRecoveryPlugin(AirflowPlugin):
    """
    Make ``site_recovery`` visible in Airflow's plugin list; it registers nothing.

    Every component imports hooks, triggers, sensors and operators by module path from the
    installed ``site_recovery`` package, links declared on our own operators through
    ``operator_extra_links`` need no registration, and the ``azure_site_recovery`` connection type
    comes from the distribution's provider metadata (``site_recovery.provider_info``). So this
    class stays empty on purpose: it keeps plugin loading cheap and the Azure SDK out of the
    scheduler and the API server.
    """

    name = "site_recovery"
