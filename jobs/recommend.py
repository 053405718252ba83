"""spark-submit entry point: `spark-submit jobs/recommend.py --config conf/cluster.toml ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["recommend", *sys.argv[1:]]))
