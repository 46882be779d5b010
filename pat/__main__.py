import sys

from pat.cli import main

sys.exit(main())
