"""spark-submit entry point: `spark-submit jobs/refresh.py --config conf/cluster.toml --run-date ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["refresh", *sys.argv[1:]]))
