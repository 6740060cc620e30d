"""
Airflow plugin entry for the site recovery integration.

The distribution ``asr-site-recovery`` (``plugins/site_recovery/pyproject.toml``) registers
:class:`SiteRecoveryPlugin` under the ``airflow.plugins`` entry point, so this is the only module of
the package the plugin manager imports; ``plugins/.airflowignore`` keeps the plugins-folder scan
away from the package's files. Keep this module's imports to Airflow's own: whatever it imports is
imported by the scheduler, the API server and every other component at start-up. Loading it brings
only the typed records (``site_recovery.records`` and its ``vocabulary``: pydantic, no Azure SDK), so
every component can rebuild them from XCom (``tests/unit/test_plugin_loading.py`` checks that no
``azure`` module and no other product module comes with it).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class _ReportApps:
    """``fastapi_apps``, built when read: only the API server reads it (``get_fastapi_plugins``), so the
    route module and FastAPI stay out of the scheduler, the triggerer and the workers."""

    def __get__(self, instance: object, owner: type) -> list[dict]:
        from site_recovery.links import PLUGIN_URL_PREFIX
        from site_recovery.report_routes import app

        return [{"app": app, "url_prefix": PLUGIN_URL_PREFIX, "name": "Site recovery reports"}]


class SiteRecoveryPlugin(AirflowPlugin):
    """
    Make ``site_recovery`` visible in Airflow's plugin list, and its records readable from XCom.

    Every component imports hooks, triggers, sensors and operators by module path from the
    installed ``site_recovery`` package, links declared on our own operators through
    ``operator_extra_links`` need no registration, and the ``azure_site_recovery`` connection type
    comes from the distribution's provider metadata (``site_recovery.provider_info``). So this
    class registers little else on purpose: it keeps plugin loading cheap and the Azure SDK out of
    the scheduler and the API server. The one exception is the API server's route to stored
    reports (``fastapi_apps``, see site_recovery.report_routes), which the ``Report`` button of the
    report tasks opens.
    """

    name = "site_recovery"
    fastapi_apps = _ReportApps()

    @classmethod
    def on_load(cls, *args, **kwargs) -> None:
        """Let this process rebuild the product's records from XCom (Airflow serde's allow list).

        Tasks return typed records and Airflow stores them with serde, which rebuilds only classes
        on its allow list (``[core] allowed_deserialization_classes``, ``airflow.*`` by default).
        Every Airflow process loads plugins before it reads XCom (a task process while it builds its
        context, before rendering templates or expanding mapped arguments), so registering here means
        a deployment needs no configuration for it and no DAG file pays the import while it parses.
        """
        import site_recovery.records  # noqa: F401  (registers its classes with serde's allow_class)
