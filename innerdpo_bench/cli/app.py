"""The typer app every command registers on, its consoles and error handling, and the options commands share."""

from __future__ import annotations

import errno
import functools
import os

import typer
from rich.console import Console

from innerdpo_bench.errors import RunFailed, UserError, disk_full, name_too_long, unknown_choice
from innerdpo_bench.evaluation.suites import DEFAULT_ROWS, DEFAULT_SUITE, MINI_SUITE, SUITES

app = typer.Typer(
    name="innerdpo",
    help="Train DPO, IPO and InnerDPO LoRA adapters and compare how far they generalise across four preference shifts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
PIPE_WIDTH = 10_000   # the width of a console that is not a terminal: wide enough for any table we print


class OutputConsole(Console):
    """A rich console that never cuts a table when its output is not a terminal (a pipe, a file, a CI log):
    rich otherwise takes 80 columns, or whatever terminal stdin has, and shortens cells to `…`. Off a terminal
    it is PIPE_WIDTH wide (COLUMNS is ignored there), so a table takes its natural width, the widest value of
    each column, and every value prints in full; on a terminal it is rich's console, fitted to the window."""

    @property
    def size(self):
        size = super().size
        if self._width is not None or self.is_terminal:
            return size
        return size._replace(width=PIPE_WIDTH)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


err_console = OutputConsole(stderr=True, highlight=False)
console = OutputConsole(highlight=False)
HELP = {"help_option_names": ["-h", "--help"]}   # context_settings of every command


def handle_errors(func):
    """Turn library errors into one red line and an exit code (2 usage, 1 failure, 130 interrupt)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (UserError, RunFailed) as err:
            from rich.markup import escape   # a message may hold brackets: pip install 'innerdpo-bench[postgres]'

            err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except Exception as err:
            if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:  # a path the user gave (--home, RUN)
                err_console.print(f"[red]error:[/red] {name_too_long(err)}", soft_wrap=True)
                raise typer.Exit(2) from None
            full = disk_full(err)
            if full is None:
                raise
            from rich.markup import escape

            err_console.print(f"[red]error:[/red] {escape(full)}; free space and run it again (innerdpo train "
                              "--resume continues a run from its last checkpoint)", soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def quiet_libraries() -> None:
    """Keep library chatter (transformers, datasets, lm-eval warnings) out of the terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("transformers", "datasets", "peft", "accelerate", "lm-eval", "lm_eval", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


# --------------------------------------------------------------------------- the workspace

HOME_HELP = ("Workspace holding runs/ and the store (store.sqlite, or the server it remembers) (default: "
             "$INNERDPO_HOME, else ./innerdpo); it names store run ids.")
STORE_HELP = ("The store: sqlite:///PATH, or postgresql://USER@HOST:PORT/DATABASE for workers on many nodes (password "
              "from $PGPASSWORD or ~/.pgpass). Default: $INNERDPO_STORE, else the one the workspace remembers, else "
              "HOME/store.sqlite. A new workspace remembers it, so later commands need only --home.")
STORE_BUSY_TIMEOUT_S = 30.0   # how long a command waits for another process's write lock


def home_option(panel: str | None = None):
    return typer.Option(None, "--home", help=HOME_HELP, show_default=False, rich_help_panel=panel)


def store_option(panel: str | None = None):
    return typer.Option(None, "--store", help=STORE_HELP, show_default=False, rich_help_panel=panel)


def open_store(home: str | None, *, create: bool = False, readonly: bool = False, store: str | None = None):
    """The store of the workspace `home` (`store`: --store), waiting up to STORE_BUSY_TIMEOUT_S for another
    process's lock.

    Only the commands that start work (`queue add`, `queue add-base`, `worker`, `demo`) create a workspace;
    the others refuse a home without a store in one line (a mistyped --home), and those that only read open
    it read-only, so they work on read-only media too."""
    from innerdpo_bench.store import Store

    return Store(home, url=store, busy_timeout_s=STORE_BUSY_TIMEOUT_S, create=create, readonly=readonly)


# --------------------------------------------------------------------------- evaluation options

SUITE_HELP = (f"Evaluation suite: {DEFAULT_SUITE} (default), "
              + ", ".join(name for name in SUITES if name not in (DEFAULT_SUITE, MINI_SUITE))
              + f", or {MINI_SUITE} (offline synthetic).")
LIMIT_HELP = f"N rows of each shift (default {DEFAULT_ROWS}, as the reference)"
CHAT_TEMPLATE_CHOICES = {"auto": None, "on": True, "off": False}


def suite_option(panel: str | None = None):
    return typer.Option(None, "--suite", help=SUITE_HELP, show_default=False, rich_help_panel=panel)


def limit_option(panel: str | None = None, sampled: bool = False):
    """--limit; `sampled` for a command that also has --sample (first N rows, or N seeded random ones)."""
    text = LIMIT_HELP + (": the first N, or N seeded random rows with --sample random." if sampled else ": the first N.")
    return typer.Option(None, "--limit", help=text, show_default=False, rich_help_panel=panel)


def data_dir_option():
    return typer.Option(None, "--data-dir", help="Score DIR/<shift>.jsonl instead of a suite.", show_default=False)


GENIES_DIR_HELP = ("GENIES distributions/ folder (e.g. the authors' data tarball unpacked) for genies: datasets and "
                   "suites; the same as $INNERDPO_GENIES_DIR. Default: the package's copy.")


def genies_dir_option(panel: str | None = None):
    return typer.Option(None, "--genies-dir", help=GENIES_DIR_HELP, show_default=False, rich_help_panel=panel)


def use_genies_dir(value: str | None) -> None:
    """Apply --genies-dir to this process and every subprocess it starts (a worker's runs) by setting
    $INNERDPO_GENIES_DIR, which the data loaders read, inside lm-eval too; UserError if the folder is missing."""
    if value:
        from innerdpo_bench.data.genies import GENIES_DIR_ENV, genies_root

        os.environ[GENIES_DIR_ENV] = str(genies_root(value))


def batch_size_option():
    return typer.Option("16", "--batch-size", help="Requests per forward pass: N, auto or auto:N.")


def device_option():
    return typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N.")


def chat_template_option():
    return typer.Option("auto", "--chat-template", help="auto: render prompts with the model's chat template when it "
                        "has one, as training does | on | off (lm-eval's --apply_chat_template).")


def apply_chat_template(value: str) -> bool | None:
    """--chat-template → `evaluate`'s apply_chat_template (None = auto); UserError naming the choices."""
    if value not in CHAT_TEMPLATE_CHOICES:
        raise unknown_choice("--chat-template", value, CHAT_TEMPLATE_CHOICES)
    return CHAT_TEMPLATE_CHOICES[value]


def say_progress(message: str) -> None:
    """A dim stderr status line (evaluate's progress callback)."""
    err_console.print(f"[dim]{message}…[/dim]", soft_wrap=True)


def say_cache_hit(report: dict) -> None:
    """One stderr line when the evaluation came from the whole-evaluation cache (no model was loaded)."""
    cache = report.get("cache") or {}
    if cache.get("hit"):
        err_console.print(f"using cached evaluation {cache['key']} (computed {cache.get('computed_at')}; "
                          "--no-cache recomputes)", soft_wrap=True, markup=False)


ANSI = {"green": "32", "red": "31", "cyan": "36", "yellow": "33", "dim": "2", "bold": "1"}


def print_aligned(title: str, header: list[str], rows: list[list[str]], numeric: list[bool],
                  paints: list[dict[int, str]] | None = None, empty: str = "") -> None:
    """A table as aligned text, one line per row, numbers right-aligned, each row's `paints` ({column index:
    colour}) applied on a terminal (ANSI, as rich would; piped, plain text). rich's Table took 14 s over 10,000
    rows (`runs`, `queue ls --all`); this takes a tenth of a second. Long cells are not cut (`less -S` scrolls)."""
    import sys

    widths = [max([len(header[index]), *(len(row[index]) for row in rows)]) for index in range(len(header))]
    colour = console.is_terminal and not console.no_color

    def line(cells: list[str], paint: dict[int, str]) -> str:
        parts = []
        for index, text in enumerate(cells):
            text = text.rjust(widths[index]) if numeric[index] else text.ljust(widths[index])
            if colour and index in paint:
                text = f"\x1b[{ANSI[paint[index]]}m{text}\x1b[0m"
            parts.append(text)
        return "  ".join(parts).rstrip()

    out = [title, line(header, {index: "bold" for index in range(len(header))}),
           "  ".join("─" * width for width in widths)]
    out += [line(cells, paint) for cells, paint in zip(rows, paints or [{}] * len(rows))]
    if not rows and empty:
        out.append(empty)
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()

