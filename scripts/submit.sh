#!/usr/bin/env bash
# spark-submit a sparkals job together with its package (dist/sparkals.zip as --py-files).
# Usage: see usage() below, or scripts/submit.sh --help.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
caller="$PWD"

usage() {
  local jobs
  jobs="$(cd "$repo/jobs" && ls -- *.py | sed 's/\.py$//' | tr '\n' ' ')"
  cat <<EOF
usage: scripts/submit.sh [spark-submit options] JOB [job arguments]

Packages sparkals (scripts/package.sh, when a source changed since the last package) and runs
spark-submit with dist/sparkals.zip as --py-files and dist/jobs/JOB.py as the application.

  spark-submit options  passed through as given: --master URL, --deploy-mode client|cluster,
                        --conf KEY=VALUE (repeatable), --files, --num-executors, ...
                        Your --py-files are added after the package.
  JOB                   one of: ${jobs}
                        (or the path of another .py application)
  job arguments         for the job: --config PATH, --set SECTION.KEY=VALUE, --run-date YYYY-MM-DD

spark-submit is \$SPARK_HOME/bin/spark-submit when SPARK_HOME is set, else the pip pyspark's in .venv.
PYSPARK_PYTHON and PYSPARK_DRIVER_PYTHON default to the .venv Python for local and standalone
(spark://) masters; on other masters only the driver's does, when it runs here (client mode).
DIST_DIR moves dist/.

example:
  scripts/submit.sh --master spark://127.0.0.1:7077 --conf spark.executor.memory=1g \\
    nightly --config conf/cluster.toml --run-date 2026-11-22
EOF
}

bad_usage() {
  echo "scripts/submit.sh: $*" >&2
  usage | sed -n 1p >&2
  echo "(scripts/submit.sh --help for more)" >&2
  exit 2
}

spark_opts=()
user_py_files=""
master=""
deploy_mode="client"
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    # spark-submit's options that take no value
    -v | --verbose | --supervise) spark_opts+=("$1"); shift ;;
    --py-files=*) user_py_files="${1#*=}"; shift ;;
    --master=*) master="${1#*=}"; spark_opts+=("$1"); shift ;;
    --deploy-mode=*) deploy_mode="${1#*=}"; spark_opts+=("$1"); shift ;;
    --*=*) spark_opts+=("$1"); shift ;;
    -*)
      [ $# -ge 2 ] || bad_usage "option $1 needs a value"
      case "$1" in
        --py-files) user_py_files="$2" ;;
        --master) master="$2"; spark_opts+=("$1" "$2") ;;
        --deploy-mode) deploy_mode="$2"; spark_opts+=("$1" "$2") ;;
        *) spark_opts+=("$1" "$2") ;;
      esac
      shift 2
      ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || bad_usage "no JOB given"
job="$1"
shift

# Check the job before packaging, so that a typo fails at once.
case "$job" in
  *.py)
    app="$job"
    case "$app" in /*) ;; *) app="$caller/$app" ;; esac
    [ -f "$app" ] || bad_usage "no such application: $job"
    ;;
  *[!A-Za-z0-9_-]* | "") bad_usage "unknown job '$job'" ;;
  *)
    [ -f "$repo/jobs/$job.py" ] || bad_usage "unknown job '$job'"
    app=""
    ;;
esac

# The caller's Python choices, before _venv.sh sets both to the .venv Python.
user_python="${PYSPARK_PYTHON-}"
user_driver_python="${PYSPARK_DRIVER_PYTHON-}"
source "$here/_venv.sh" ""  # explicit: a bare `source` would pass on our arguments
venv_python="$repo/.venv/bin/python"
unset PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON
case "$master" in
  "" | local | local\[* | spark://*) default_python="$venv_python" ;;
  *) default_python="" ;;  # YARN, Kubernetes: the nodes have their own Python
esac
python_for_workers="${user_python:-$default_python}"
[ -n "$python_for_workers" ] && export PYSPARK_PYTHON="$python_for_workers"
if [ -n "$user_driver_python" ]; then
  export PYSPARK_DRIVER_PYTHON="$user_driver_python"
elif [ "$deploy_mode" = "client" ]; then
  export PYSPARK_DRIVER_PYTHON="${python_for_workers:-$venv_python}"
fi

dist="${DIST_DIR:-$repo/dist}"
case "$dist" in /*) ;; *) dist="$caller/$dist" ;; esac
if [ ! -f "$dist/.packaged" ] || [ ! -f "$dist/sparkals.zip" ] \
  || [ -n "$(find "$repo/src/sparkals" "$repo/conf" "$repo/jobs" -newer "$dist/.packaged" -print -quit)" ]; then
  DIST_DIR="$dist" "$here/package.sh" >/dev/null
fi
[ -n "$app" ] || app="$dist/jobs/$job.py"

if [ -n "${SPARK_HOME:-}" ]; then
  spark_submit="$SPARK_HOME/bin/spark-submit"
  [ -x "$spark_submit" ] || { echo "error: SPARK_HOME=$SPARK_HOME has no bin/spark-submit" >&2; exit 3; }
else
  spark_submit="$repo/.venv/bin/spark-submit"
fi

cmd=("$spark_submit" ${spark_opts[@]+"${spark_opts[@]}"} --py-files "$dist/sparkals.zip${user_py_files:+,$user_py_files}" "$app" "$@")
cd "$caller"
echo "+ ${PYSPARK_PYTHON:+PYSPARK_PYTHON=$PYSPARK_PYTHON }$(printf '%q ' "${cmd[@]}")" >&2
exec "${cmd[@]}"
