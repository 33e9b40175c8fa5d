"""`innerdpo samples`: greedy completions of a checkpoint and of its base on fixed prompts per shift, and their statistics."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import (HELP, app, apply_chat_template, chat_template_option, console, data_dir_option,
                                    device_option, genies_dir_option, handle_errors, quiet_libraries, say_progress,
                                    suite_option, use_genies_dir)
from innerdpo_bench.evaluation.samples import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPTS


def prompts_option(default: int | None = DEFAULT_PROMPTS, flag: str = "--prompts"):
    return typer.Option(default, flag, help="Prompts per shift: the first N distinct prompts of each "
                        "shift (the same for every run of a suite).", show_default=default is not None)


def max_new_tokens_option():
    return typer.Option(DEFAULT_MAX_NEW_TOKENS, "--max-new-tokens", help="Longest completion, in tokens; one that "
                        "reaches it without an end token counts as truncated.")


@app.command("samples", context_settings=HELP)
@handle_errors
def samples_command(
    checkpoint: str = typer.Argument(..., help="Run directory, PEFT adapter directory, model directory, hub id, "
                                     "or a built-in base (tiny-random, smollm2-135m).", show_default=False),
    prompts: int = prompts_option(),
    max_new_tokens: int = max_new_tokens_option(),
    suite: str | None = suite_option(),
    data_dir: str | None = data_dir_option(),
    genies_dir: str | None = genies_dir_option(),
    sampled: bool = typer.Option(False, "--sampled", help="Also one sampled completion per prompt (temperature 1), "
                                 "seeded by --seed."),
    seed: int = typer.Option(0, "--seed", help="Seed of --sampled."),
    device: str = device_option(),
    chat_template: str = chat_template_option(),
    no_cache: bool = typer.Option(False, "--no-cache", help="Generate the base model's completions again (otherwise "
                                  "computed once per base, suite and settings)."),
    output: str | None = typer.Option(None, "--output", help="Where to write the samples (default RUN/samples.jsonl, "
                                      "else ./samples-<name>.jsonl).", show_default=False),
) -> None:
    """Write greedy completions of CHECKPOINT and of its base model (adapter off) for N prompts per shift.

    Prints per shift the statistics of docs/statistics.md ("Reading the adapters"): rep (repeated 4-grams),
    distinct2, len (words), empty and truncated shares, and the NLL of each model on its own text. No rule
    here decides that an adapter is coherent; read the texts (innerdpo tui, run detail).
    """
    quiet_libraries()
    use_genies_dir(genies_dir)
    from innerdpo_bench.evaluation.samples import SampleSettings, generate_samples

    settings = SampleSettings(prompts=prompts, max_new_tokens=max_new_tokens, suite=suite, data_dir=data_dir,
                              sampled=sampled, seed=seed, apply_chat_template=apply_chat_template(chat_template))
    result = generate_samples(checkpoint, settings, output=output, device=device, use_cache=not no_cache,
                              progress=say_progress)
    print_stats(result.records)
    hit = " (base completions from the cache)" if result.header["base_cache"]["hit"] else ""
    console.print(f"samples: {result.path}{hit}", soft_wrap=True)


def print_stats(records: list[dict]) -> None:
    """The statistics table of a samples file's greedy records, adapter and base per shift, then the rule flags."""
    from rich.table import Table

    from innerdpo_bench.evaluation import textstats

    stats = textstats.sample_stats(records)
    table = Table(title="greedy completions: adapter (base)", title_justify="left")
    for column in ("shift", "n", "rep", "distinct2", "len", "empty", "truncated", "nll"):
        table.add_column(column, justify="left" if column == "shift" else "right")

    def pair(model, base, digits: int = 2) -> str:
        if model is None:
            return "-"
        return f"{model:.{digits}f}" + (f" ({base:.{digits}f})" if base is not None else "")

    for shift, both in stats.items():
        model, base = both["model"], both["base"]
        table.add_row(shift, str(model.n), pair(model.rep, base.rep), pair(model.distinct2, base.distinct2),
                      pair(model.len, base.len, 1), pair(model.empty, base.empty), pair(model.truncated, base.truncated),
                      pair(model.nll, base.nll), style="bold" if shift == "all" else None)
    console.print(table)
    pooled = stats["all"]
    ratio = textstats.nll_ratio(pooled["model"], pooled["base"])
    if ratio is not None:
        console.print(f"gen_nll_ratio {ratio:.3f} (adapter's NLL of its own greedy text over the base's of its own)")
    for line in textstats.flags(pooled["model"], pooled["base"]):
        console.print(f"[yellow]rule: {line}[/yellow]")
