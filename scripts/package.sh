#!/usr/bin/env bash
# Build what spark-submit ships, into dist/ (or $DIST_DIR):
#   dist/sparkals.zip   the sparkals package, for --py-files (importable on the driver and executors)
#   dist/conf/          a copy of conf/ (ship the file you use with --files on YARN or Kubernetes)
#   dist/jobs/          a copy of jobs/ (the spark-submit entry points)
# Idempotent: the zip is reproducible (sorted entries, fixed timestamps) and only replaced when its
# content changes; conf/ and jobs/ are mirrored, so files removed from the source go away too.
# Prints the zip's path on stdout.
set -euo pipefail
caller="$PWD"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""  # explicit: a bare `source` would pass on our arguments

dist="${DIST_DIR:-$repo/dist}"
case "$dist" in /*) ;; *) dist="$caller/$dist" ;; esac
mkdir -p "$dist"

python - "$repo/src/sparkals" "$dist/sparkals.zip" <<'PY'
"""Zip src/sparkals with `sparkals/` at the root of the archive, as --py-files needs."""
import os
import sys
import zipfile
from pathlib import Path

source, target = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(
    p for p in source.rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
)
if not (source / "__init__.py").is_file():
    sys.exit(f"error: {source} is not a Python package")
partial = target.with_name(target.name + ".partial")
with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
    for path in files:
        # Fixed time and mode: the same sources give the same bytes, so rebuilding changes nothing.
        info = zipfile.ZipInfo(f"sparkals/{path.relative_to(source).as_posix()}", (1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, path.read_bytes())
if target.is_file() and target.read_bytes() == partial.read_bytes():
    partial.unlink()
else:
    os.replace(partial, target)
PY

for folder in conf jobs; do
  rm -rf "$dist/$folder.partial"
  cp -R "$repo/$folder" "$dist/$folder.partial"
  find "$dist/$folder.partial" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
  rm -rf "$dist/$folder"
  mv "$dist/$folder.partial" "$dist/$folder"
done

# The zip alone must be enough to import the package: no site-packages (-S), no editable install.
if ! python -I -S -c 'import sys; sys.path.insert(0, sys.argv[1]); import sparkals.config' "$dist/sparkals.zip"; then
  echo "error: $dist/sparkals.zip does not import on its own" >&2
  exit 1
fi
# submit.sh repackages when a source file is newer than this stamp.
touch "$dist/.packaged"
echo "$dist/sparkals.zip"
