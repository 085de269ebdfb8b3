"""`python -m vigil_zoo ...` is `vigil-zoo ...`."""
from .cli import main

raise SystemExit(main())
