import sys

from pubsubd.cli import main

sys.exit(main())
