#!/usr/bin/env bash
# One command from a fresh clone: set up .venv with the test extra and run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" -x).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" test
set +e
python -m pytest "$@"
status=$?
# pytest exits 5 when it collected no test: that is a failure of the suite, say so.
[ "$status" -eq 5 ] && echo "error: pytest collected no tests" >&2
exit "$status"
