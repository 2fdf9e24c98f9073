"""DVC stage 'embed': run it for one dataset with its settings from params.yaml.

Usage: python stages/embed.py DATASET
"""

import sys

from salgl.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("embed", sys.argv[1:]))
