"""spark-submit entry point: `spark-submit jobs/evaluate.py --config conf/cluster.toml ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
