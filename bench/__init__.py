"""hyena_serve's measuring instrument: `python -m bench --help`."""
