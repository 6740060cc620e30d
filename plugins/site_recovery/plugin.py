"""Airflow plugin entry for the site recovery integration."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class SiteRecoveryPlugin(AirflowPlugin):
    """
    Make ``site_recovery`` visible in Airflow's plugin list; it registers nothing.

    Airflow imports hooks, triggers and sensors by module path from ``plugins/`` (which every
    component puts on ``sys.path``), and links declared on our own operators through
    ``operator_extra_links`` need no registration. So this class stays empty on purpose: it keeps
    the plugin loader cheap and avoids importing the Azure SDK in the scheduler and API server.
    """

    name = "site_recovery"
