"""Modal screens: help (keys and filter grammar), a yes/no question, a tick list (columns, grouping keys), export
of the view, and the form that queues runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, Select, SelectionList, Static

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.errors import UserError
from innerdpo_bench.queue.runspec import parse_seeds
from innerdpo_bench.results import table

EXPORT_FORMATS = {"markdown": ".md", "csv": ".csv", "json": ".json"}


class HelpScreen(ModalScreen[None]):
    """Every key, where it works, and the filter grammar."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, keys: list[tuple[str, str, str]], home: Path) -> None:
        super().__init__()
        self.keys = keys
        self.home = home

    def compose(self) -> ComposeResult:
        lines = ["# innerdpo dashboard", "", f"Workspace: `{self.home}`", "", "| where | key | does |", "|---|---|---|"]
        lines += [f"| {where} | `{key}` | {text} |" for where, key, text in self.keys]
        lines += ["", "## Filter (`/`)", "", table.FILTER_HELP.replace("|", "\\|"), "",
                  "Missing values sort last in both directions. The dashboard only reads the store and the run "
                  "files; quitting it never stops a run.", "", "*escape closes this help*"]
        with VerticalScroll(id="help-body"):
            yield Markdown("\n".join(lines))


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question before an action that cannot be taken back (cancel a run, queue a re-evaluation)."""

    BINDINGS = [Binding("y,enter", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Static(Text(self.question), id="confirm-question")
            yield Static("y: yes · n or escape: no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChooseModal(ModalScreen[tuple[str, ...] | None]):
    """Tick any of a list of (value, help) options: space ticks, enter applies (dismisses with the ticked values
    in the list's order), escape cancels (None)."""

    BINDINGS = [Binding("enter", "apply", "Apply", priority=True), Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, options: list[tuple[str, str]], ticked: set[str]) -> None:
        super().__init__()
        self.title_text = title
        self.options = options
        self.ticked = ticked

    def compose(self) -> ComposeResult:
        width = max((len(value) for value, _ in self.options), default=0)
        with Vertical(id="choose-dialog", classes="dialog"):
            yield Label(self.title_text)
            yield SelectionList[str](*((Text(value.ljust(width)) + Text(f"  {help_}", style="dim"), value,
                                        value in self.ticked) for value, help_ in self.options), id="choose-list")
            yield Static("space: tick · enter: apply · escape: cancel", classes="hint")

    def action_apply(self) -> None:
        ticked = set(self.query_one(SelectionList).selected)
        self.dismiss(tuple(value for value, _ in self.options if value in ticked))


class ExportModal(ModalScreen[tuple[str, Path] | None]):
    """Choose the format and file of an export; dismisses with (format, path) or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, default_stem: str = "innerdpo-runs") -> None:
        super().__init__()
        self.default_stem = default_stem

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog", classes="dialog"):
            yield Label("Export the visible view (rows, order, columns, deltas) to a file")
            yield Input(value=self.default_stem + ".md", id="export-path", compact=True)
            yield Static("relative paths are written in the current directory", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Markdown", id="markdown", variant="primary", compact=True)
                yield Button("CSV", id="csv", compact=True)
                yield Button("JSON", id="json", compact=True)

    def _path_for(self, fmt: str) -> Path:
        path = Path(self.query_one("#export-path", Input).value.strip() or self.default_stem).expanduser()
        if path.suffix.lower() in EXPORT_FORMATS.values() or not path.suffix:
            path = path.with_suffix(EXPORT_FORMATS[fmt])
        return path if path.is_absolute() else Path.cwd() / path

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id, self._path_for(event.button.id)))

    @on(Input.Submitted, "#export-path")
    def _submitted(self, event: Input.Submitted) -> None:
        suffix = Path(event.value).suffix.lower()
        fmt = next((name for name, ext in EXPORT_FORMATS.items() if ext == suffix), "markdown")
        self.dismiss((fmt, self._path_for(fmt)))


@dataclass(frozen=True)
class FormChoices:
    """What the queue form offers, read from the library (config defaults, methods, align methods, suites)."""

    methods: tuple[str, ...]
    align_methods: tuple[str, ...]
    suites: tuple[str, ...]
    defaults: dict[str, Any]


def load_form_choices() -> FormChoices:
    """The add-run form's choices and defaults (torch-free: the training config and the method catalog)."""
    from innerdpo_bench.evaluation.suites import DEFAULT_SUITE, SUITES
    from innerdpo_bench.methods.catalog import ALIGN_METHODS, CURRENT_ALIGN_METHODS, METHODS

    defaults = TrainConfig()
    older = tuple(name for name in ALIGN_METHODS if name not in CURRENT_ALIGN_METHODS)
    return FormChoices(
        methods=tuple(METHODS), align_methods=tuple(CURRENT_ALIGN_METHODS) + older,
        suites=(DEFAULT_SUITE, *(name for name in SUITES if name != DEFAULT_SUITE)),
        defaults={"method": defaults.method, "align_method": defaults.align_method, "dataset": defaults.dataset,
                  "base_model": defaults.base_model, "max_steps": defaults.max_steps, "seed": defaults.seed},
    )


@dataclass(frozen=True)
class AddRequest:
    """The form's answer: what `runspec.train_specs` takes (the training config, seeds) and the evaluation's."""

    config: TrainConfig
    seeds: list[int]
    suite: str | None
    limit: int | None


def _positive_int(text: str, name: str, required: bool) -> int | None:
    text = text.strip()
    if not text and not required:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text!r}") from None
    if value < 1:
        raise UserError(f"{name} must be at least 1, got {value}")
    return value


class AddRunModal(ModalScreen[AddRequest | None]):
    """Queue training runs: method, align method (InnerDPO), dataset, base model, seeds, steps, eval suite, limit.
    The transform follows from the method (hs-ether-InnerDPO trains an ETHER transform, ...)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "submit", "Queue")]

    def __init__(self, choices: FormChoices) -> None:
        super().__init__()
        self.choices = choices
        self.error = ""

    def compose(self) -> ComposeResult:
        c, d = self.choices, self.choices.defaults
        with Vertical(id="add-dialog", classes="dialog"):
            yield Label("Queue training runs: one per seed, trained then evaluated by a worker")
            with Grid(id="add-form"):
                yield Label("method")
                yield Select([(name, name) for name in c.methods], value=d["method"], allow_blank=False, id="method",
                             compact=True)
                yield Label("align method")
                yield Select([(name, name) for name in c.align_methods], value=d["align_method"], allow_blank=False,
                             id="align_method", compact=True)
                yield Label("dataset")
                yield Input(value=str(d["dataset"]), id="dataset", compact=True)
                yield Label("base model")
                yield Input(value=str(d["base_model"]), id="base_model", compact=True)
                yield Label("seeds")
                yield Input(value=str(d["seed"]), placeholder="1,2,3", id="seeds", compact=True)
                yield Label("max steps")
                yield Input(value=str(d["max_steps"]), id="max_steps", compact=True)
                yield Label("eval suite")
                yield Select([(name, name) for name in c.suites], value=c.suites[0], allow_blank=False, id="suite",
                             compact=True)
                yield Label("eval limit")
                yield Input(placeholder="rows per shift (default 500)", id="limit", compact=True)
            yield Static("", id="add-error")
            with Horizontal(classes="buttons"):
                yield Button("Queue", id="submit", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def request(self) -> AddRequest:
        """The form as train_specs arguments; UserError for a field that cannot be right."""
        value = {name: self.query_one(f"#{name}", Input).value.strip()
                 for name in ("dataset", "base_model", "seeds", "max_steps", "limit")}
        if not value["dataset"]:
            raise UserError("dataset is empty")
        config = TrainConfig.from_mapping(
            {"method": self.query_one("#method", Select).value,
             "align_method": self.query_one("#align_method", Select).value, "dataset": value["dataset"],
             "base_model": value["base_model"] or self.choices.defaults["base_model"],
             "max_steps": value["max_steps"]}, "the form", text=True)
        seeds = parse_seeds(value["seeds"] or str(self.choices.defaults["seed"]))
        return AddRequest(config, seeds, self.query_one("#suite", Select).value,
                          _positive_int(value["limit"], "eval limit", required=False))

    def action_submit(self) -> None:
        try:
            answer = self.request()
        except UserError as err:
            self.error = str(err)
            self.query_one("#add-error", Static).update(Text(self.error, style="red"))
            return
        self.dismiss(answer)

    @on(Button.Pressed, "#submit")
    def _submit(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()
