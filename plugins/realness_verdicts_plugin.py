"""The verdicts page in the Airflow UI: ``realness_tasks.verdicts_page`` mounted in the api-server.

The app is served at ``/realness/`` by the api-server (plugin ``fastapi_apps``) and linked from the
UI's navigation (``external_views``, under Browse). Every route depends on Airflow's own
``get_user`` (the UI's session cookie or a Bearer token), so an unauthenticated request is
refused with 401; uploads trigger ``realness_ingest`` through Airflow's REST API as the caller.
Airflow's ``[api] base_url`` is used to reach that API when set, else the server that got the request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/realness"


def verdicts_app():
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import get_user
    from airflow.configuration import conf
    from realness_airflow import load_config
    from realness_tasks.verdicts_page import AirflowRuns, create_app

    runs = AirflowRuns(conf.get("api", "base_url", fallback=None), cookie_name=COOKIE_NAME_JWT_TOKEN)
    return create_app(load_config, get_user, runs)


class RealnessVerdictsPlugin(AirflowPlugin):
    name = "realness_verdicts"
    fastapi_apps = [{"app": verdicts_app(), "url_prefix": URL_PREFIX, "name": "Realness verdicts"}]
    external_views = [{"name": "Realness verdicts", "href": URL_PREFIX.lstrip("/") + "/", "destination": "nav",
                       "category": "browse", "url_route": "realness-verdicts"}]
