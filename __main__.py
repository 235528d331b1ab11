"""`python -m widthnas`: the same CLI as the `widthnas` script."""
import sys

from widthnas.nas.cli import main

sys.exit(main())
