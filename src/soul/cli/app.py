"""The typer application and the options every subcommand shares."""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass
class CliState:
    debug: bool = False
    quiet: bool = False


state = CliState()

app = typer.Typer(
    name="soul",
    help=(
        "Soul: one portrait + a prompt + a speech or singing track -> a long, lip-synced, "
        "identity-stable video.\n\nExample: soul probe portrait.jpg speech.wav"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or chatter; results and errors only."),
) -> None:
    state.debug = debug
    state.quiet = quiet
