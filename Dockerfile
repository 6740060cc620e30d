# Airflow image for this project: the official 3.3.2 image plus the pinned lock, and the lab
# (include/lab) installed so the `asr-lab` service can run from the same image.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt /requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements.txt \
        "apache-airflow-providers-celery" "apache-airflow-providers-postgres"

COPY --chown=airflow:0 include/lab /opt/asr-lab
RUN pip install --no-cache-dir --no-deps /opt/asr-lab
