# Sourced by demo.sh and test.sh: check Java, then create .venv and install the project into it.
# Usage: source scripts/_venv.sh [extra]   (extra: a pip extra such as "test")
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "error: Java 17+ is required by Spark and no 'java' was found." >&2
  echo "       Install a JDK (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME." >&2
  exit 3
fi
java_version="$("$java_bin" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
java_major="${java_version%%.*}"
[ "$java_major" = "1" ] && java_major="$(echo "$java_version" | cut -d. -f2)"
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  echo "error: Java 17+ is required by Spark, found '${java_version:-unknown}' at $(command -v "$java_bin")." >&2
  echo "       Install Java 17 or newer and/or point JAVA_HOME at it." >&2
  exit 3
fi

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11+ is required (tomllib); set PYTHON to a python3.11 or newer." >&2
  exit 3
fi

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv" >&2
  "$python_bin" -m venv .venv
fi
extra="${1:-}"
spec="."
[ -n "$extra" ] && spec=".[$extra]"
stamp=".venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
# An install with an extra (test.sh) includes the plain one (demo.sh, package.sh, submit.sh).
installed=""
if [ -n "$extra" ]; then
  [ -f "$stamp-$extra" ] && installed=yes
  stamp="$stamp-$extra"
else
  { [ -f "$stamp" ] || compgen -G "$stamp-*" >/dev/null; } && installed=yes
fi
if [ -z "$installed" ]; then
  echo "installing sparkals${extra:+ with [$extra]} into .venv (first time: about a minute)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet -e "$spec"
  touch "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
export PYSPARK_PYTHON="$repo/.venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$repo/.venv/bin/python"
