"""``python -m py_code_mode.cli`` runs the command-line interface."""

from py_code_mode.cli import main

if __name__ == "__main__":
    main()
