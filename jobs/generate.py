"""spark-submit entry point: `spark-submit jobs/generate.py --config conf/cluster.toml ...`."""

import sys

from sparkals.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
