"""``python -m jaxnets``: the jaxnets command."""

from jaxnets.cli import main

raise SystemExit(main())
