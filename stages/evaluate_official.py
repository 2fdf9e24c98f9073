"""DVC stage 'evaluate-official': import a released experiment, evaluate it, draw its figures.

Usage: python stages/evaluate_official.py NAME   (an entry of `official:` in params.yaml)
"""

import sys

from salgl.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("evaluate-official", sys.argv[1:]))
