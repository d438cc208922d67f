"""`python -m clrfind` (also what `torchrun -m clrfind` runs)."""

from clrfind.cli import main

if __name__ == "__main__":
    main()
