"""`python -m mmlearn <sub-command> ...`, the same as the console command `mmlearn`."""

from mmlearn.cli import main

if __name__ == "__main__":
    main()
