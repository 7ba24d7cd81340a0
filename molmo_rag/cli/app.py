"""The typer application every command module registers on."""

import typer

app = typer.Typer(
    name="molmo-rag",
    help="Caption, count and search images, slide decks and videos with Molmo2.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
