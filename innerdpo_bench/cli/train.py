"""`innerdpo train`, `innerdpo methods` and `innerdpo demo`: train one adapter, list the methods, run the demo."""

from __future__ import annotations

import dataclasses
import inspect
import json
import signal
import typing

import typer

from innerdpo_bench.cli.app import (HELP, app, console, err_console, genies_dir_option, handle_errors, quiet_libraries,
                                    use_genies_dir)
from innerdpo_bench.config import TrainConfig, flag_name
from innerdpo_bench.errors import UserError

# --------------------------------------------------------------------------- train


def config_parameters() -> list[inspect.Parameter]:
    """typer options generated from TrainConfig's fields, so flags and help text live in one place."""
    from rich.markup import escape

    hints = typing.get_type_hints(TrainConfig)
    params = []
    for field in dataclasses.fields(TrainConfig):
        info = TrainConfig.info(field.name)
        if field.name == "method":
            option = typer.Argument(..., help=escape(info.help), show_default=False)
        elif hints[field.name] is bool:
            flag = flag_name(field.name)
            option = typer.Option(field.default, f"{flag}/--no-{flag[2:]}", help=escape(info.help),
                                  rich_help_panel=info.group)
        else:
            option = typer.Option(field.default, flag_name(field.name), help=escape(info.help),
                                  rich_help_panel=info.group)   # escape: `[tensorboard]` in a help is text
        params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hints[field.name]))
    params.append(inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                    default=typer.Option(False, "--quiet", "-q", help="No progress bar.")))
    params.append(inspect.Parameter("genies_dir", inspect.Parameter.KEYWORD_ONLY, annotation=typing.Optional[str],
                                    default=genies_dir_option("Run")))
    return params


def _train_parameters() -> list[inspect.Parameter]:
    """`innerdpo train`'s: TrainConfig's flags with METHOD optional (it may come from --config), and --config."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for param in config_parameters():
        if param.name == "method":
            param = param.replace(default=typer.Argument(None, metavar="METHOD", show_default=False,
                                                         help=param.default.help + " (optional with --config)"),
                                  annotation=str | None)
        params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                                    default=typer.Option(None, "--config", help="A JSON file of these options in "
                                                         "snake_case (a queued run's spec[\"train\"]); flags given "
                                                         "here override its values.", rich_help_panel="Run",
                                                         show_default=False)))
    params.append(inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                    default=typer.Option(False, "--resume", help="Continue the run in --output-dir "
                                                         "from its newest intact checkpoint (--save-steps); its "
                                                         "options come from its config.json unless given. A missing "
                                                         "or empty directory starts afresh.", rich_help_panel="Checkpoints")))
    return params


def _train_config(ctx: typer.Context, config: str | None, values: dict, resume: bool = False) -> TrainConfig:
    """The flags' TrainConfig, or --config FILE's with the flags given on the command line on top; with --resume
    and neither METHOD nor --config, the run directory's config.json with the given flags on top."""
    # typer vendors its own click: its ParameterSource is compared by name
    given = {name: value for name, value in values.items()
             if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}
    if config is None and values["method"] is None and resume and values["output_dir"]:
        from pathlib import Path

        from innerdpo_bench.train.resume import stored_options

        stored = stored_options(Path(values["output_dir"]), set(TrainConfig.names()))
        return TrainConfig.from_mapping(stored, f"{values['output_dir']}/config.json", **given)
    if config is None:
        if values["method"] is None:
            raise UserError("give METHOD (e.g. innerdpo train dpo), --config FILE, or --resume --output-dir RUN")
        return TrainConfig(**values)
    return TrainConfig.from_file(config, **given)


@handle_errors
def train_command(ctx: typer.Context, **kwargs) -> None:
    """Train one LoRA adapter and write a run directory.

    METHOD is dpo, ipo, simper, hs-none-InnerDPO, hs-ether-InnerDPO or hs-supr-InnerDPO (case-insensitive; the seed's
    spellings hs-None-InnerDPO, hs-ETHER-InnerDPO, hs-SupressedHS-InnerDPO work too). --config FILE reads the
    options from a JSON file instead (`innerdpo worker` trains a queued run so); flags override it.

    Log-probs are averaged over completion tokens for every method by default (--logp-agg mean), so InnerDPO
    with α=0 is exactly dpo and a comparison isolates the hidden-state term; --logp-agg sum gives the DPO
    paper's form. Several GPUs: accelerate launch -m innerdpo_bench train ...

    Long runs: --save-steps checkpoints into RUN/checkpoints; `innerdpo train --resume --output-dir RUN` (and the
    worker, re-claiming an interrupted run) continues from the newest intact one.
    """
    quiet, config, resume = kwargs.pop("quiet"), kwargs.pop("config"), kwargs.pop("resume")
    use_genies_dir(kwargs.pop("genies_dir"))
    quiet_libraries()
    cfg = _train_config(ctx, config, kwargs, resume).validate()   # the boundary where training starts
    for line in cfg.warnings():
        err_console.print(f"[yellow]warning:[/yellow] {line}", soft_wrap=True, highlight=False)
    if resume and not cfg.output_dir:
        raise UserError("--resume needs --output-dir RUN, the run directory to continue")
    from innerdpo_bench.train.trainer import train

    signal.signal(signal.SIGTERM, _raise_interrupt)
    run_dir = train(cfg, progress=not quiet, resume_run=resume)
    console.print(f"run directory: {run_dir}")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


train_command.__signature__ = inspect.Signature(_train_parameters())
app.command("train", context_settings=HELP)(train_command)


# --------------------------------------------------------------------------- methods


@app.command("methods")
@handle_errors
def methods_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the methods, InnerDPO align methods (formula and when to use each) and transforms."""
    from innerdpo_bench.methods.catalog import (ALIGN_METHODS, METHODS, OUTPUT_LOSS_NAMES, TRANSFORM_SUMMARIES,
                                                TRANSFORMS)

    data = {
        "methods": [{"name": m.name, "output_loss": m.output_loss, "transform": m.transform, "summary": m.summary}
                    for m in METHODS.values()],
        "align_methods": [{"name": a.name, "current": a.current, "description": a.description}
                          for a in ALIGN_METHODS.values()],
        "transforms": list(TRANSFORMS),
        "output_losses": list(OUTPUT_LOSS_NAMES),
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title="methods", title_justify="left")
    for column in ("name", "output loss", "transform", "summary"):
        table.add_column(column)
    for m in data["methods"]:
        table.add_row(m["name"], m["output_loss"], m["transform"] or "-", m["summary"])
    console.print(table)
    table = Table(title="align methods (--align-method)", title_justify="left")
    table.add_column("name")
    table.add_column("g and when to use it")
    for a in data["align_methods"]:
        table.add_row(a["name"] + ("" if a["current"] else " (older)"), a["description"])
    console.print(table)
    table = Table(title="transforms (of the hidden states, before pooling)", title_justify="left")
    table.add_column("name")
    table.add_column("what it does")
    for name in data["transforms"]:
        table.add_row(name, TRANSFORM_SUMMARIES[name])
    console.print(table)


# --------------------------------------------------------------------------- demo


@app.command("demo")
@handle_errors
def demo_command(
    base_model: str = typer.Option("smollm2-135m", "--base-model", help="smollm2-135m (a real 135M model, 2 CPU cores: ~12 min) "
                                   "or tiny-random (seconds)."),
    quick: bool = typer.Option(False, "--quick", help="Smallest sizes: a smoke test of the whole pipeline."),
    home: str = typer.Option(None, "--home", help="Workspace (default $INNERDPO_HOME or ./innerdpo)."),
    suite: str = typer.Option("genies:alpaca_easy", "--suite", help="What to train and score on: genies:alpaca_easy "
                              "(real GENIES, ETHICS and medical rows shipped with the package), another genies: suite, "
                              "or mini (the offline synthetic suite)."),
) -> None:
    """Run the whole pipeline offline: the base model and dpo, ipo, hs-none/ether/supr-InnerDPO trained on the
    suite's in_domain train split (GENIES alpaca_easy by default), each scored on the four shifts by the lm-eval
    harness through the run queue; prints the table."""
    quiet_libraries()
    from innerdpo_bench.demo import run_demo

    run_demo(base_model=base_model, quick=quick, home=home, console=console, suite=suite)
