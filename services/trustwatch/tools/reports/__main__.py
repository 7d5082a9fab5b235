"""``python -m trustwatch.tools.reports``: see :func:`trustwatch.tools.reports.cli.main`."""

import sys

from trustwatch.tools.reports.cli import main

if __name__ == "__main__":
    sys.exit(main())
