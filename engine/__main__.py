"""`python -m engine` is the `vkharp` command."""
import sys

from .cli import main

sys.exit(main())
