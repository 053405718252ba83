"""spark-submit entry point: `spark-submit jobs/tune.py --config conf/cluster.toml ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
