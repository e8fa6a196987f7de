"""``python -m edgecnn.cli``: the same as the ``edgecnn`` command."""
from edgecnn.cli import main

if __name__ == "__main__":
    main()
