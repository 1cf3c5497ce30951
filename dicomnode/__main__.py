"""``python -m dicomnode`` is the ``spinenode`` console script."""

from dicomnode.cli import main

raise SystemExit(main())
