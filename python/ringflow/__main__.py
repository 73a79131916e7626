"""`python -m ringflow ...` is the `ringflow` command."""

import sys

from ringflow.cli import main

sys.exit(main())
