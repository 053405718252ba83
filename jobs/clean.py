"""spark-submit entry point: `spark-submit jobs/clean.py --config conf/cluster.toml --yes ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["clean", *sys.argv[1:]]))
