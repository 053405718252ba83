"""Example Airflow DAG: the nightly sparkals job through SparkSubmitOperator, once a day.

Not part of the package and not imported by the tests (Airflow is no dependency of sparkals): copy it
into your DAGs folder and adapt it. It expects
  * the output of `scripts/package.sh` (dist/: sparkals.zip, jobs/, conf/) on the Airflow workers, at
    $SPARKALS_DIST (default /opt/sparkals/dist);
  * the provider `apache-airflow-providers-apache-spark` and an Airflow connection `spark_default`
    whose host is the cluster's master (spark://host:7077, yarn, k8s://https://host:6443) and
    whose extras name spark-submit if it is not on the PATH;
  * a Python with pyspark's dependencies (numpy, pandas, pyarrow) on the cluster's nodes.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

DIST = os.environ.get("SPARKALS_DIST", "/opt/sparkals/dist")
# "client": the driver runs on the Airflow worker and reads the config from DIST. "cluster" (YARN):
# the driver runs in a YARN container and reads the copy that `files` put in its working folder.
DEPLOY_MODE = os.environ.get("SPARKALS_DEPLOY_MODE", "client")
CONFIG = "cluster.toml" if DEPLOY_MODE == "cluster" else f"{DIST}/conf/cluster.toml"

with DAG(
    dag_id="sparkals_nightly",
    # A data-interval timetable: the run that starts at 02:30 on day D+1 covers day D, so {{ ds }}
    # is D, the night to process (Airflow 3's default for a cron string would make it D+1).
    schedule=CronDataIntervalTimetable("30 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,  # nights build on each other's indexes: never two at once
    default_args={
        # A try that finds the output root's lock held exits with status 5 having written nothing. A
        # killed try leaves its lock behind; the next try takes it over once its heartbeat is older
        # than lock.stale_minutes (30): so retry later than that.
        "retries": 2,
        "retry_delay": timedelta(minutes=35),
        # Well beyond a normal night (about 10 minutes for 16M events on 2 cores): adapt to your data.
        "execution_timeout": timedelta(hours=6),
    },
    tags=["sparkals"],
) as dag:
    SparkSubmitOperator(
        task_id="nightly",
        conn_id="spark_default",
        deploy_mode=DEPLOY_MODE,
        name="sparkals-nightly",
        application=f"{DIST}/jobs/nightly.py",
        py_files=f"{DIST}/sparkals.zip",
        files=f"{DIST}/conf/cluster.toml",
        conf={"spark.executor.memory": "4g"},
        application_args=["--config", CONFIG, "--run-date", "{{ ds }}"],
    )
