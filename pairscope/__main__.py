"""`python -m pairscope`."""

from pairscope.cli import main

if __name__ == "__main__":
    main()
