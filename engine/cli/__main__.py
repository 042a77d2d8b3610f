"""`python -m engine.cli` runs the `bpllm` command line."""
import sys

from engine.cli import main

sys.exit(main())
