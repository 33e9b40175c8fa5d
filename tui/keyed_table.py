"""A DataTable that is updated in place by row key: the base of the runs and queue tables.

Live data never clears the table (that resets the cursor and the scroll): rows are added, changed cell
by cell and removed by key, then put in the wanted order, and the cursor is put back on the row it was
on. DataTable.sort keeps the cursor's index, not its row, hence the re-seat.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist


class _KeyedText(Text):
    """The first cell of each row, carrying the row's key so that a sort can follow a given order."""

    def __init__(self, text: Text, row_key: str) -> None:
        super().__init__(text.plain, style=text.style, justify=text.justify, no_wrap=True, end="",
                         spans=list(text.spans))
        self.row_key = row_key


def _same(a: object, b: object) -> bool:
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return a == b


@dataclass(frozen=True)
class ColumnSpec:
    key: str
    label: Text
    width: int | None = None    # None: fit the content


class KeyedTable(DataTable):
    """Rows are (key, {column: cell}); `show` makes the table equal to a list of them, in that order."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    # Above this many vanished rows, clear and refill rather than remove one by one (remove_row is O(n)).
    REFILL_ABOVE = 200

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._column_keys: list[str] = []

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, or None for an empty table."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except CellDoesNotExist:
            return None

    def keys_in_order(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows]

    def set_columns(self, columns: list[ColumnSpec]) -> None:
        """Lay the columns out afresh (on a resize across a layout threshold); rows come back with `show`."""
        self.clear(columns=True)
        self._column_keys = [column.key for column in columns]
        for column in columns:
            self.add_column(column.label, key=column.key, width=column.width)

    def relabel(self, labels: dict[str, Text]) -> None:
        """New header labels of the same widths (sort arrows are reserved space, see view.header_label)."""
        changed = False
        for key, label in labels.items():
            if not _same(self.columns[key].label, label):
                self.columns[key].label = label
                changed = True
        if changed:  # the header row is cached: without this a sort that keeps the order shows the old arrow
            self._clear_caches()
            self.refresh()

    def show(self, rows: list[tuple[str, dict[str, Text]]], cursor_key: str | None = None) -> None:
        """Make the table hold exactly `rows`, in order, changing only what changed; the cursor stays on its
        row (or moves to `cursor_key`), and on the nearest row if its own went away."""
        keep = cursor_key or self.current_key
        old_index = self.cursor_row
        wanted = {key: cells for key, cells in rows}
        first = self._column_keys[0]
        with self.app.batch_update():
            stale = [key for key in self.rows if key.value not in wanted]
            if len(stale) > self.REFILL_ABOVE:
                self.clear()
            else:
                for key in stale:
                    self.remove_row(key)
            for key, cells in rows:
                cells = {**cells, first: _KeyedText(cells[first], key)}
                if key in self.rows:
                    for column in self._column_keys:
                        if not _same(self.get_cell(key, column), cells[column]):
                            self.update_cell(key, column, cells[column], update_width=True)
                else:
                    self.add_row(*(cells[column] for column in self._column_keys), key=key)
            order = {key: index for index, (key, _) in enumerate(rows)}
            if self.keys_in_order() != [key for key, _ in rows]:
                self.sort(first, key=lambda cell: order[cell.row_key])
            if not rows:
                return
            if keep in order:
                index = self.get_row_index(keep)
            else:
                index = min(old_index, len(rows) - 1)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
