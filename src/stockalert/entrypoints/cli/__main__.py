"""`python -m stockalert.entrypoints.cli`: the `stockalert` command."""

import sys

from stockalert.entrypoints.cli import main

sys.exit(main())
