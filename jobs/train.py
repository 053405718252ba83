"""spark-submit entry point: `spark-submit jobs/train.py --config conf/cluster.toml ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
