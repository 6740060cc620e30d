# Airflow image for this project: the official 3.3.2 image plus the pinned lock, the product's
# distribution (plugins/site_recovery, imported as the package `site_recovery` by every
# component) and the lab (include/lab) installed so the `asr-lab` service can run from the same
# image.
FROM apache/airflow:3.3.2-python3.11

# Everything from the lock, the Celery and Postgres providers and their drivers included: the
# image runs the versions the tests ran.
COPY --chown=airflow:0 requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt

COPY --chown=airflow:0 include/lab /opt/asr-lab
RUN pip install --no-cache-dir --no-deps /opt/asr-lab

# The product last (it changes most often): a regular install into site-packages, dependencies
# from the lock above. The folder must keep the name site_recovery (pyproject.toml finds the
# package list from its parent), and a host's stale build/ or egg-info must not reach the wheel.
COPY --chown=airflow:0 plugins/site_recovery /opt/asr-site-recovery/site_recovery
RUN rm -rf /opt/asr-site-recovery/site_recovery/build /opt/asr-site-recovery/site_recovery/*.egg-info \
    && pip install --no-cache-dir --no-deps /opt/asr-site-recovery/site_recovery

# Installed in site-packages, the package cannot find include/ "beside plugins/" from its own path
# (site.py, script_contract.py), so name the folder docker-compose mounts.
ENV SITE_RECOVERY_INCLUDE_DIR=/opt/airflow/include
