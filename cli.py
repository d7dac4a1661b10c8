#!/usr/bin/env python
"""`python cli.py ...` from a checkout; the same as the installed `tfdeblur` command."""
import sys

from tfdeblur.cli import main

if __name__ == "__main__":
    sys.exit(main())
