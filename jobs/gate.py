"""spark-submit entry point: `spark-submit jobs/gate.py --config conf/cluster.toml ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["gate", *sys.argv[1:]]))
