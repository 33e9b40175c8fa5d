"""`innerdpo tui`: a live dashboard over a workspace's store; it reads, and writes only intents.

Threading model (harlequin's rule): every store read and write runs in a thread worker that opens its
own `Store`, and hands its result back by posting a message; only message handlers, on the UI thread,
touch widgets. The dashboard owns no process: runs belong to `innerdpo worker`, so quitting or crashing
the dashboard never stops one. New state reaches the screen by polling (every `poll_s`, one poll at a time).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, TabbedContent, TabPane

from innerdpo_bench.errors import UserError
from innerdpo_bench.results import table
from innerdpo_bench.store import CorruptStore, Store, resolve_home
from innerdpo_bench.tui.broken import StoreBrokenScreen
from innerdpo_bench.tui.data import Snapshot, eval_spec, load_snapshot
from innerdpo_bench.tui.detail import RunDetailScreen
from innerdpo_bench.tui.messages import IntentDone, PollFailed, SnapshotReady
from innerdpo_bench.tui.modals import AddRequest, AddRunModal, ExportModal, FormChoices, HelpScreen, load_form_choices
from innerdpo_bench.tui.queue_view import QueueTable, QueueView
from innerdpo_bench.tui.runs_view import RunsTable, RunsView
from innerdpo_bench.tui.view import ViewState, build_view

DEFAULT_THEME = "textual-dark"
EXPORTERS: dict[str, Callable[[table.Table], str]] = {
    "markdown": table.to_markdown, "csv": table.to_csv, "json": table.to_json,
}


class FormChoicesLoaded(Message):
    def __init__(self, choices: FormChoices) -> None:
        super().__init__()
        self.choices = choices


class MainScreen(Screen):
    """The two views, as tabs: runs (results) and queue."""

    def compose(self) -> ComposeResult:
        with TabbedContent(id="views", initial="runs"):
            with TabPane("1 Runs", id="runs"):
                yield RunsView(id="runs-view")
            with TabPane("2 Queue", id="queue"):
                yield QueueView(id="queue-view")
        yield Footer(compact=True)

    AUTO_FOCUS = "#runs-table"

    def on_mount(self) -> None:
        self.app.views_mounted()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "queue":
            self.query_one(QueueView).refresh_table()   # kept up to date only while it is shown
        self.query_one(RunsTable if event.pane.id == "runs" else QueueTable).focus()


class InnerDPOApp(App):
    """The dashboard. `clock` (unix seconds) feeds elapsed times and ETAs; tests pass a fixed one."""

    CSS_PATH = "app.tcss"
    TITLE = "innerdpo"
    BINDINGS = [
        Binding("q", "quit", "Quit", tooltip="Quit the dashboard (runs keep going)"),
        Binding("question_mark", "help", "Help", tooltip="Keys and the filter grammar"),
        Binding("1", "show_view('runs')", "Runs", show=False, tooltip="The results table"),
        Binding("2", "show_view('queue')", "Queue", show=False, tooltip="The queue"),
        Binding("a", "add_run", "Add run", show=False, tooltip="Queue new training runs (a form)"),
    ]

    def __init__(self, home: str | os.PathLike | None = None, *, poll_s: float = 1.0,
                 clock: Callable[[], float] = time.time, theme: str = DEFAULT_THEME) -> None:
        super().__init__()
        self.home = resolve_home(home)
        self.poll_s = poll_s
        self.clock = clock
        self.theme = theme
        self.snapshot: Snapshot | None = None
        self.poll_error: str | None = None
        self._polling = False
        self._poll_again = False
        self._form_choices: FormChoices | None = None
        self.main_screen = MainScreen()
        self.polls = 0                                 # store reads started
        self.store_broken: CorruptStore | None = None  # set once: polling stops, StoreBrokenScreen stays
        self._poll_timer: Timer | None = None

    def get_default_screen(self) -> Screen:
        return self.main_screen

    def on_mount(self) -> None:
        self._poll_timer = self.set_interval(self.poll_s, self.request_poll)
        self.request_poll()

    @property
    def runs_view(self) -> RunsView:
        return self.main_screen.query_one(RunsView)

    @property
    def queue_view(self) -> QueueView:
        return self.main_screen.query_one(QueueView)

    # ------------------------------------------------------------------ polling

    def request_poll(self) -> None:
        """Read the store now, in a thread; at most one read is in flight (a slow one is followed by one more)."""
        if self.store_broken is not None:
            return
        if self._polling:
            self._poll_again = True
            return
        self._polling, self._poll_again = True, False
        self.polls += 1
        try:
            state = self.runs_view.state.to_json()
        except NoMatches:
            state = None
        self._poll(state)

    @work(thread=True, group="poll", exit_on_error=False)
    def _poll(self, state: dict | None) -> None:
        """Read the store and build the runs view for `state` here, off the UI thread (0.7 s each at 10,000 runs)."""
        try:
            snapshot = load_snapshot(self.home, self.clock)
        except CorruptStore as err:
            self.post_message(PollFailed(str(err), corrupt=err))
        except Exception as err:  # noqa: BLE001 (a locked or broken store is shown, never fatal)
            self.post_message(PollFailed(f"{type(err).__name__}: {err}" if not isinstance(err, UserError)
                                         else str(err)))
        else:
            view = None
            if state is not None:
                try:
                    view = build_view(snapshot.runs, ViewState.from_json(state))
                except UserError:
                    view = None   # the UI thread builds it and says why
            self.post_message(SnapshotReady(snapshot, view, state))

    def _poll_finished(self) -> None:
        self._polling = False
        if self._poll_again:
            self.request_poll()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._poll_finished()
        self._apply(message)

    def _apply(self, message: SnapshotReady) -> None:
        snapshot = self.snapshot = message.snapshot
        if self.poll_error is not None:
            self.poll_error = None
            self.notify("store readable again")
        try:
            runs_view, queue_view = self.runs_view, self.queue_view
            runs_view.apply_runs(snapshot.runs, snapshot.progress, message.view, message.state)
            queue_view.apply_runs(snapshot.runs, snapshot.progress)
            by_id = {run.id: run for run in snapshot.runs}
            for screen in self.screen_stack:
                if isinstance(screen, RunDetailScreen) and screen.run.id in by_id:
                    screen.apply_run(by_id[screen.run.id], snapshot.progress.get(screen.run.id),
                                     runs_view.baseline_run())
        except NoMatches:
            # Before the views are mounted (a fast first read on a busy machine), the snapshot waits for them: dropped,
            # the first paint waited a whole poll interval. After they are gone (shutting down), it is dropped.
            if not self.main_screen.is_mounted:
                self._early = message

    _early: SnapshotReady | None = None

    def views_mounted(self) -> None:
        """MainScreen is up: show a snapshot that arrived before it."""
        early, self._early = self._early, None
        if early is not None:
            self._apply(early)

    def on_poll_failed(self, message: PollFailed) -> None:
        if message.corrupt is not None:
            self.show_store_broken(message.corrupt)   # first: no poll follows this one
        self._poll_finished()
        if message.corrupt is not None:
            return
        if message.error != self.poll_error:
            self.poll_error = message.error
            self.notify(f"cannot read the store: {message.error}", severity="error", timeout=10)

    def show_store_broken(self, error: CorruptStore) -> None:
        """Stop polling for good and cover every view with the error (rows from a corrupt store are not shown)."""
        if self.store_broken is not None:
            return
        self.store_broken = error
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        self.push_screen(StoreBrokenScreen(error))

    # ------------------------------------------------------------------ intents (writes through the library)

    def intent(self, action: Callable[[Store], str]) -> None:
        """Run one store write in a thread; its outcome is notified and followed by a poll."""
        self.run_worker(partial(self._run_intent, action), thread=True, group="intents", exit_on_error=False)

    def _run_intent(self, action: Callable[[Store], str]) -> None:
        try:
            with Store(self.home, busy_timeout_s=10.0, create=False, migrate=False) as store:  # rows only, no schema
                text = action(store)
        except CorruptStore as err:
            self.post_message(PollFailed(str(err), corrupt=err))
        except UserError as err:
            self.post_message(IntentDone(str(err), error=True))
        except Exception as err:  # noqa: BLE001 (shown to the user; the dashboard keeps running)
            self.post_message(IntentDone(f"{type(err).__name__}: {err}", error=True))
        else:
            self.post_message(IntentDone(text))

    def on_intent_done(self, message: IntentDone) -> None:
        self.notify(message.text, severity="error" if message.error else "information",
                    timeout=8 if message.error else 4)
        self.request_poll()

    def cancel(self, run_id: int) -> None:
        def cancel(store: Store) -> str:
            outcome = store.cancel(run_id)
            return (f"run {run_id} cancelled" if outcome == "cancelled" else
                    f"run {run_id}: cancel requested; its worker stops it at the next heartbeat")
        self.intent(cancel)

    def retry(self, run_id: int) -> None:
        def retry(store: Store) -> str:
            store.retry(run_id)
            return f"run {run_id} queued again"
        self.intent(retry)

    def move(self, run_id: int, where: str) -> None:
        """Reorder the queue: `where` is up, down or front (store.move permutes queued priorities)."""
        from innerdpo_bench.store.claims import queue_order

        def move(store: Store) -> str:
            queued = [run.id for run in queue_order(store.list_runs("queued"))]
            if run_id not in queued:
                raise UserError(f"run {run_id} is {store.get_run(run_id).status}; only queued runs can be reordered")
            index = queued.index(run_id)
            if where == "front":
                store.move(run_id, to_front=True)
                return f"run {run_id} moved to the front"
            if where == "up":
                if index == 0:
                    return f"run {run_id} is already first"
                store.move(run_id, before=queued[index - 1])
                return f"run {run_id} moved up"
            if index == len(queued) - 1:
                return f"run {run_id} is already last"
            store.move(queued[index + 1], before=run_id)
            return f"run {run_id} moved down"
        self.intent(move)

    def evaluate(self, run_id: int, suite: str | None = None, limit: int | None = None, chosen: bool = False) -> None:
        """Queue an eval-only run of this run's checkpoint (a worker runs it like any other run); `chosen`: with
        this suite and row limit instead of the run's own."""
        def evaluate(store: Store) -> str:
            from innerdpo_bench.queue.runspec import check_eval_options

            spec = eval_spec(store.get_run(run_id))
            if chosen:
                check_eval_options(suite, limit)
                spec = spec.replace(eval=dataclasses.replace(spec.eval, suite=suite, limit=limit))
            new_id = store.add_run(spec, kind="eval")
            return f"queued run {new_id}: evaluation of run {run_id} ({spec.eval.suite or 'default suite'}" \
                   f", {spec.eval.limit or 'all'} rows per shift)"
        self.intent(evaluate)

    def annotate(self, run_id: int, name: str, tags: list[str], note: str) -> None:
        def annotate(store: Store) -> str:
            store.annotate(run_id, name=name, tags=tags, note=note)
            return f"run {run_id}: {name}" + (f" · tags {', '.join(tags)}" if tags else "")
        self.intent(annotate)

    def enqueue(self, request: AddRequest) -> None:
        def enqueue(store: Store) -> str:
            from innerdpo_bench.queue.runspec import eval_spec, train_specs

            specs = train_specs(request.config, request.seeds, eval_spec(request.suite, request.limit))
            ids = store.add_runs(specs)
            return f"queued run{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}: {specs[0].name}"
        self.intent(enqueue)

    # ------------------------------------------------------------------ actions

    def action_show_view(self, name: str) -> None:
        """Show the runs or queue view and give its table the keys now, not when the tab's event lands: keys typed
        right after `1` used to reach the hidden view."""
        if self.screen is not self.main_screen:
            return
        self.main_screen.query_one(TabbedContent).active = name
        if name == "queue":
            self.queue_view.refresh_table()
        self.main_screen.query_one(RunsTable if name == "runs" else QueueTable).focus()

    def edit_run(self, run) -> None:
        """`n`: the edit form for a run's name, tags and note."""
        from innerdpo_bench.tui.modals import EditRunModal

        def saved(answer) -> None:
            if answer is not None:
                self.annotate(run.id, answer.name, answer.tags, answer.note)
        self.push_screen(EditRunModal(run.id, run.name, run.tags, run.note), saved)

    def ask_evaluate(self, run) -> None:
        """`v`: choose the suite and row limit, then queue the evaluation."""
        from innerdpo_bench.evaluation.suites import DEFAULT_SUITE, SUITES
        from innerdpo_bench.tui.modals import EvalModal

        evaluation = run.spec.eval
        suites = (DEFAULT_SUITE, *(name for name in SUITES if name != DEFAULT_SUITE))

        def chosen(answer) -> None:
            if answer is not None:
                self.evaluate(run.id, *answer, chosen=True)
        self.push_screen(EvalModal(run.id, suites, evaluation.suite, evaluation.limit), chosen)

    def open_compare(self, run_a, run_b) -> None:
        from innerdpo_bench.tui.compare_view import CompareScreen

        self.push_screen(CompareScreen(run_a, run_b))

    def open_curves(self, runs) -> None:
        from innerdpo_bench.tui.charts import CurvesScreen

        self.push_screen(CurvesScreen(list(runs)))

    def open_param_plot(self, runs) -> None:
        from innerdpo_bench.tui.charts import ParamScreen

        self.push_screen(ParamScreen(list(runs)))

    def confirm(self, question: str, action: Callable[[], None]) -> None:
        """Ask `question` (y/n) and take `action` only on yes: cancel and re-evaluate go through here."""
        from innerdpo_bench.tui.modals import ConfirmModal

        self.push_screen(ConfirmModal(question), callback=lambda yes: action() if yes else None)

    def confirm_cancel(self, run_id: int) -> None:
        self.confirm(f"Cancel run {run_id}? A running run is stopped by its worker.", lambda: self.cancel(run_id))

    def confirm_evaluate(self, run_id: int) -> None:
        run = next((run for run in (self.snapshot.runs if self.snapshot else []) if run.id == run_id), None)
        if run is not None:
            self.ask_evaluate(run)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(list(self.key_help()), self.home))

    def action_add_run(self) -> None:
        """`a`: the add form, starting from the highlighted run's settings when there is one (once: a second `a`
        while the form loads or is open does nothing)."""
        if any(isinstance(screen, AddRunModal) for screen in self.screen_stack) or self._form_loading:
            return
        if self._form_choices is not None:
            self._show_add_form(self._form_choices)
        else:
            self._form_loading = True
            self.notify("loading the training config…", timeout=2)
            self._load_form_choices()

    _form_loading = False

    def _start_settings(self) -> dict | None:
        """The highlighted run's settings (its tab's table), for the add form to start from."""
        try:
            tabs = self.main_screen.query_one(TabbedContent)
            run = self.runs_view.selected_run() if tabs.active == "runs" else self.queue_view.selected_run()
        except NoMatches:
            return None
        if run is None or run.spec.train is None:
            return None
        return {**run.spec.train_json(), "run": run.id, "suite": run.spec.eval.suite, "limit": run.spec.eval.limit}

    @work(thread=True, group="form", exclusive=True, exit_on_error=False)
    def _load_form_choices(self) -> None:
        self.post_message(FormChoicesLoaded(load_form_choices()))  # imports torch: not on the UI thread

    def on_form_choices_loaded(self, message: FormChoicesLoaded) -> None:
        self._form_choices, self._form_loading = message.choices, False
        self._show_add_form(message.choices)

    def _show_add_form(self, choices: FormChoices) -> None:
        def queued(request: AddRequest | None) -> None:
            if request is not None:
                self.enqueue(request)
        self.push_screen(AddRunModal(choices, self._start_settings()), queued)

    def open_detail(self, run_id: int) -> None:
        run = next((run for run in (self.snapshot.runs if self.snapshot else []) if run.id == run_id), None)
        if run is not None:
            self.push_screen(RunDetailScreen(run, self.runs_view.baseline_run(), self.home))

    def action_export(self) -> None:
        def chosen(answer: tuple[str, Path] | None) -> None:
            if answer is not None:
                self.export_view(*answer)
        self.push_screen(ExportModal(), chosen)

    def export_view(self, fmt: str, path: Path) -> Path | None:
        """Write the runs view as shown (filter, sort, pins, baseline deltas, columns) in `fmt`."""
        view = self.runs_view.view
        if view is None:
            self.notify("nothing to export yet", severity="warning")
            return None
        try:
            path.write_text(EXPORTERS[fmt](view), encoding="utf-8")
        except OSError as err:
            self.notify(f"cannot write {path}: {err.strerror or err}", severity="error")
            return None
        self.notify(f"exported {len(view.rows)} rows as {fmt}: {path}", timeout=10)
        return path

    # ------------------------------------------------------------------ help and command palette

    def key_help(self) -> Iterable[tuple[str, str, str]]:
        """(where, key, what) for every binding, from the classes' BINDINGS: the help cannot go stale."""
        from innerdpo_bench.tui.commands import key_help

        return key_help(self)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from innerdpo_bench.tui.commands import system_commands

        yield from super().get_system_commands(screen)
        yield from system_commands(self, screen)


def main(home: str | os.PathLike | None = None, poll_s: float = 1.0) -> None:
    InnerDPOApp(home, poll_s=poll_s).run()
