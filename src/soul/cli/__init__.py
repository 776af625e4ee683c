"""The `soul` command.

Each subcommand lives in its own module under `soul.cli` and registers itself on `app` when
imported; only commands that work are imported here. `main()` turns Soul's errors into one line on
stderr and the documented exit codes (2 bad input, 1 runtime failure) with no traceback unless
`--debug` is given.
"""

from __future__ import annotations

import sys
import warnings

from soul.cli.app import app, state
from soul.errors import SoulError, SoulWarning

# Command modules register themselves on `app` at import time.
from soul.cli import generate as _generate  # noqa: F401,E402
from soul.cli import demo as _demo  # noqa: F401,E402
from soul.cli import info as _info  # noqa: F401,E402
from soul.cli import download as _download  # noqa: F401,E402
from soul.cli import train as _train  # noqa: F401,E402
from soul.cli import data as _data  # noqa: F401,E402
from soul.cli import probe as _probe  # noqa: F401,E402
from soul.cli import bench as _bench  # noqa: F401,E402
from soul.cli import distill as _distill  # noqa: F401,E402
from soul.cli import mini as _mini  # noqa: F401,E402
from soul.cli import client as _client  # noqa: F401,E402
from soul.cli import serve as _serve  # noqa: F401,E402
from soul.cli import live as _live  # noqa: F401,E402


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `soul` console script."""
    import typer
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # typer vendors click

    warnings.simplefilter("always", SoulWarning)
    warnings.showwarning = _show_warning
    try:
        code = app(args=argv, standalone_mode=False)
    except SoulError as err:
        if state.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except NoArgsIsHelpError as err:
        err.show()
        sys.exit(2)
    except ClickException as err:
        err.show()
        sys.exit(2 if isinstance(err, UsageError) else err.exit_code)
    except Exception as err:  # an unexpected failure: one line, traceback only with --debug
        if state.debug:
            raise
        print(f"error: {type(err).__name__}: {err} (re-run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)


_default_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """Soul's warnings as one line on stderr, like its errors; others as Python prints them."""
    if issubclass(category, SoulWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, *args, **kwargs)  # type: ignore[arg-type]
