"""The screen shown, and kept, once the store fails its integrity check or is empty: what is wrong, which file, how to
recover."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from innerdpo_bench.store.integrity import CorruptStore


class StoreBrokenScreen(Screen[None]):
    """Replaces every view: rows read from a corrupt store cannot be trusted, and an empty table would look like an
    empty workspace. The app stops polling before pushing it; it cannot be dismissed, only quit (q)."""

    BINDINGS = [Binding("q", "app.quit", "Quit")]

    def __init__(self, error: CorruptStore) -> None:
        super().__init__(id="store-broken")
        self.error = error

    def compose(self) -> ComposeResult:
        text = Text()
        text.append(f"{self.error.headline}\n\n", style="bold red")
        text.append("file:   ", style="bold")
        text.append(f"{self.error.path}\n")
        text.append("what:   ", style="bold")
        text.append(f"{self.error.detail}\n\n")
        text.append("The dashboard stopped reading it: nothing read from it can be trusted. Runs that workers are "
                    "running now keep going, but cannot record their results until the store is repaired.\n\n")
        text.append("To recover\n", style="bold")
        text.append(f"{self.error.fix}\n\n")
        text.append("Then open the dashboard again. q quits.", style="dim")
        with VerticalScroll():
            yield Static(text, id="store-broken-text")
