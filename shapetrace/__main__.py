"""`python -m shapetrace`."""

from shapetrace.cli import main

raise SystemExit(main())
