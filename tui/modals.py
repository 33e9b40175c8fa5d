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
    in the list's order), escape cancels (None). With `reorder`, K/J (or shift+up/down) move the highlighted
    option up or down: the order of the answer is the list's."""

    BINDINGS = [Binding("enter", "apply", "Apply", priority=True), Binding("escape", "dismiss(None)", "Cancel"),
                Binding("K,shift+up", "move(-1)", "Up", show=False), Binding("J,shift+down", "move(1)", "Down",
                                                                             show=False)]

    def __init__(self, title: str, options: list[tuple[str, str]], ticked: set[str], reorder: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.options = list(options)
        self.ticked = set(ticked)
        self.reorder = reorder

    def _items(self):
        width = max((len(value) for value, _ in self.options), default=0)
        return [(Text(value.ljust(width)) + Text(f"  {help_}", style="dim"), value, value in self.ticked)
                for value, help_ in self.options]

    def compose(self) -> ComposeResult:
        with Vertical(id="choose-dialog", classes="dialog"):
            yield Label(self.title_text)
            yield SelectionList[str](*self._items(), id="choose-list")
            yield Static("space: tick · enter: apply · escape: cancel" + (" · K/J: move up/down" if self.reorder
                                                                          else ""), classes="hint")

    def action_move(self, step: int) -> None:
        if not self.reorder:
            return
        options = self.query_one(SelectionList)
        index = options.highlighted
        if index is None or not 0 <= index + step < len(self.options):
            return
        self.ticked = set(options.selected)
        self.options[index], self.options[index + step] = self.options[index + step], self.options[index]
        options.clear_options()
        options.add_options(self._items())
        options.highlighted = index + step

    def action_apply(self) -> None:
        ticked = set(self.query_one(SelectionList).selected)
        self.dismiss(tuple(value for value, _ in self.options if value in ticked))


class PickModal(ModalScreen[str | None]):
    """One of a list of (value, label): enter picks the highlighted one, escape cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, options: list[tuple[str, str]], current: str | None = None) -> None:
        super().__init__()
        self.title_text, self.options, self.current = title, options, current

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList
        from textual.widgets.option_list import Option

        with Vertical(id="choose-dialog", classes="dialog"):
            yield Label(self.title_text)
            yield OptionList(*(Option(label, id=value) for value, label in self.options), id="pick-list")
            yield Static("enter: choose · escape: cancel", classes="hint")

    def on_mount(self) -> None:
        from textual.widgets import OptionList

        values = [value for value, _ in self.options]
        if self.current in values:
            self.query_one(OptionList).highlighted = values.index(self.current)

    def on_option_list_option_selected(self, event) -> None:
        self.dismiss(event.option.id)


class ViewsModal(ModalScreen[tuple[str, str] | None]):
    """Named views: type a name and press enter to save the current view under it; pick a saved one to load it.
    Dismisses with ("save" | "load", name) or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList
        from textual.widgets.option_list import Option

        with Vertical(id="views-dialog", classes="dialog"):
            yield Label("Named views (columns, filter, sort, grouping; innerdpo runs --view NAME)")
            yield Input(placeholder="a name, then enter: save the current view", id="view-name", compact=True)
            if self.names:
                yield OptionList(*(Option(name, id=name) for name in self.names), id="view-list")
                yield Static("enter on a name: load it · escape: cancel", classes="hint")
            else:
                yield Static("no named views yet", classes="hint")

    @on(Input.Submitted, "#view-name")
    def _save(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(("save", event.value.strip()))

    def on_option_list_option_selected(self, event) -> None:
        self.dismiss(("load", event.option.id))


@dataclass(frozen=True)
class Annotation:
    """The edit form's answer: a run's name, tags and note (`Store.annotate`)."""

    name: str
    tags: list[str]
    note: str


class EditRunModal(ModalScreen[Annotation | None]):
    """Rename a run, edit its tags (comma-separated) and note; enter or ctrl+s saves, escape cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "submit", "Save")]

    def __init__(self, run_id: int, name: str, tags: tuple[str, ...], note: str) -> None:
        super().__init__()
        self.run_id, self.name_, self.tags, self.note = run_id, name, tags, note

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog", classes="dialog"):
            yield Label(f"Run {self.run_id}: name, tags, note")
            with Grid(id="add-form"):
                yield Label("name")
                yield Input(value=self.name_, id="edit-name", compact=True)
                yield Label("tags")
                yield Input(value=", ".join(self.tags), placeholder="baseline, ablation", id="edit-tags", compact=True)
                yield Label("note")
                yield Input(value=self.note, id="edit-note", compact=True)
            yield Static("", id="edit-error")
            yield Static("enter or ctrl+s: save · escape: cancel · filter with tag:LABEL", classes="hint")

    def action_submit(self) -> None:
        from innerdpo_bench.queue.labels import parse_tags

        name = self.query_one("#edit-name", Input).value.strip()
        try:
            if not name:
                raise UserError("the name is empty")
            tags = parse_tags([self.query_one("#edit-tags", Input).value])
        except UserError as err:
            self.query_one("#edit-error", Static).update(Text(str(err), style="red"))
            return
        self.dismiss(Annotation(name, tags, self.query_one("#edit-note", Input).value.strip()))

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()


class EvalModal(ModalScreen[tuple[str | None, int | None] | None]):
    """Queue an evaluation of a run's checkpoint: choose the suite and the row limit (the run's own by default)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "submit", "Queue")]

    def __init__(self, run_id: int, suites: tuple[str, ...], suite: str | None, limit: int | None) -> None:
        super().__init__()
        self.run_id, self.suites, self.suite, self.limit = run_id, suites, suite, limit

    def compose(self) -> ComposeResult:
        suites = list(dict.fromkeys([*(s for s in [self.suite] if s), *self.suites]))
        with Vertical(id="eval-dialog", classes="dialog"):
            yield Label(f"Queue a new evaluation of run {self.run_id}'s model")
            with Grid(id="add-form"):
                yield Label("eval suite")
                yield Select([(name, name) for name in suites], value=suites[0], allow_blank=False, id="eval-suite",
                             compact=True)
                yield Label("eval limit")
                yield Input(value="" if self.limit is None else str(self.limit),
                            placeholder="rows per shift (default 500)", id="eval-limit", compact=True)
            yield Static("", id="eval-error")
            with Horizontal(classes="buttons"):
                yield Button("Queue", id="eval-submit", variant="primary", compact=True)
                yield Button("Cancel", id="eval-cancel", compact=True)

    def action_submit(self) -> None:
        try:
            limit = _positive_int(self.query_one("#eval-limit", Input).value, "eval limit", required=False)
        except UserError as err:
            self.query_one("#eval-error", Static).update(Text(str(err), style="red"))
            return
        self.dismiss((self.query_one("#eval-suite", Select).value, limit))

    @on(Button.Pressed, "#eval-submit")
    def _submit(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#eval-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()


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

    def __init__(self, choices: FormChoices, start: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.choices = choices
        self.start = start or {}   # a run's settings to start from (`a` on a highlighted run)
        self.error = ""

    def compose(self) -> ComposeResult:
        c, d = self.choices, {**self.choices.defaults, **{key: value for key, value in self.start.items()
                                                           if value is not None}}
        suites = list(dict.fromkeys([*(s for s in [d.get("suite")] if s in c.suites), *c.suites]))
        with Vertical(id="add-dialog", classes="dialog"):
            yield Label("Queue training runs: one per seed, trained then evaluated by a worker" +
                        (f" (from run {self.start['run']})" if self.start.get("run") else ""))
            with Grid(id="add-form"):
                yield Label("method")
                yield Select([(name, name) for name in c.methods], value=d["method"] if d["method"] in c.methods
                             else c.defaults["method"], allow_blank=False, id="method", compact=True)
                yield Label("align method")
                yield Select([(name, name) for name in c.align_methods], value=d["align_method"]
                             if d["align_method"] in c.align_methods else c.defaults["align_method"], allow_blank=False,
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
                yield Select([(name, name) for name in suites], value=suites[0], allow_blank=False, id="suite",
                             compact=True)
                yield Label("eval limit")
                yield Input(value="" if d.get("limit") is None else str(d["limit"]),
                            placeholder="rows per shift (default 500)", id="limit", compact=True)
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
        start = {key: value for key, value in self.start.items()   # the other options of the run started from
                 if key in TrainConfig.__dataclass_fields__ and key not in ("seed", "output_dir")}
        config = TrainConfig.from_mapping(
            {**start, "method": self.query_one("#method", Select).value,
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
