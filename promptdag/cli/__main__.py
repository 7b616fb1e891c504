"""`python -m promptdag.cli`: the `promptdag` command."""

from promptdag.cli.main import main

raise SystemExit(main())
