"""A DataTable that is updated in place by row key: the base of the runs and queue tables.

Live data never clears the table (that resets the cursor and the scroll): rows are added, changed cell
by cell and removed by key, then put in the wanted order, and the cursor is put back on the row it was
on. DataTable.sort keeps the cursor's index, not its row, hence the re-seat.

At 10,000 runs the cost is in the rows, not the store: building every cell and DataTable measuring it took 9 s
before the first paint. So a row comes with a signature (cells are built only for a new row or one whose
signature changed), missing rows are added in the order they are shown, the first FIRST_ROWS at once and the rest
CHUNK_ROWS at a time between paints (the visible rows first), and a cell's width is its text's cell length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

Cells = dict[str, Text]
# A row to show: (key, cells), or (key, signature, build) where `build()` makes the cells and is called only for
# a row the table lacks or whose signature changed since it was shown.
RowSpec = tuple[str, Cells] | tuple[str, Any, Callable[[], Cells]]


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


_UNSET = object()


class KeyedTable(DataTable):
    """Rows are (key, {column: cell}); `show` makes the table equal to a list of them, in that order."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    # Above this many vanished rows, clear and refill rather than remove one by one (remove_row is O(n)).
    REFILL_ABOVE = 200
    FIRST_ROWS = 200     # missing rows added before the first paint: more than a screen holds
    CHUNK_ROWS = 1000    # then this many per turn of the event loop

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._column_keys: list[str] = []
        self._signatures: dict[str, Any] = {}
        self._pending: list[tuple[str, Any, Callable[[], Cells]]] = []
        self._order: dict[str, int] = {}
        self._wanted_cursor: str | None = None
        self._generation = 0

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, or None for an empty table."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except CellDoesNotExist:
            return None

    @property
    def filling(self) -> bool:
        """Whether rows are still being added between paints."""
        return bool(self._pending)

    def keys_in_order(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows]

    def set_columns(self, columns: list[ColumnSpec]) -> None:
        """Lay the columns out afresh (on a resize across a layout threshold); rows come back with `show`."""
        self.clear(columns=True)
        self._signatures.clear()
        self._pending = []
        self._column_keys = [column.key for column in columns]
        for column in columns:
            self.add_column(column.label, key=column.key, width=column.width)

    def relabel(self, labels: dict[str, Text]) -> None:
        """New header labels of the same widths (sort arrows are reserved space, see view.header_label)."""
        changed = False
        for key, label in labels.items():
            if key in self.columns and not _same(self.columns[key].label, label):
                self.columns[key].label = label
                changed = True
        if changed:  # the header row is cached: without this a sort that keeps the order shows the old arrow
            self._clear_caches()
            self.refresh()

    def show(self, rows: list[RowSpec], cursor_key: str | None = None) -> None:
        """Make the table hold exactly `rows`, in order, changing only what changed; the cursor stays on its
        row (or moves to `cursor_key`), and on the nearest row if its own went away. Rows the table lacks are
        added in order: FIRST_ROWS now, the rest between paints (`filling`)."""
        keep = cursor_key or self._wanted_cursor or self.current_key
        old_index = self.cursor_row
        specs = [row if len(row) == 3 else (row[0], _UNSET, (lambda cells=row[1]: cells)) for row in rows]
        self._generation += 1
        self._order = {key: index for index, (key, _, _) in enumerate(specs)}
        with self.app.batch_update():
            stale = [key for key in self.rows if key.value not in self._order]
            if len(stale) > self.REFILL_ABOVE:
                self.clear()
                self._signatures.clear()
            else:
                for key in stale:
                    self.remove_row(key)
                    self._signatures.pop(key.value, None)
            missing = []
            for key, signature, build in specs:
                if key not in self.rows:
                    missing.append((key, signature, build))
                elif signature is _UNSET or self._signatures.get(key, _UNSET) != signature:
                    cells = self._keyed(build(), key)
                    for column in self._column_keys:
                        if not _same(self.get_cell(key, column), cells[column]):
                            self.update_cell(key, column, cells[column], update_width=True)
                    self._signatures[key] = signature
            self._pending = missing
            self._add_pending(self.FIRST_ROWS)
            if not specs:
                self._wanted_cursor = None
                return
            if keep in self._order and keep not in self.rows:
                self._wanted_cursor = keep   # it comes with a later chunk
            else:
                self._wanted_cursor = None
            self._seat_cursor(keep, old_index)
        if self._pending:
            generation = self._generation
            self.call_after_refresh(self._fill_more, generation)

    def _keyed(self, cells: Cells, key: str) -> Cells:
        first = self._column_keys[0]
        return {**cells, first: _KeyedText(cells[first], key)}

    def _add_pending(self, limit: int) -> None:
        batch, self._pending = self._pending[:limit], self._pending[limit:]
        for key, signature, build in batch:
            cells = self._keyed(build(), key)
            self.add_row(*(cells[column] for column in self._column_keys), key=key)
            self._signatures[key] = signature
        self._reorder()

    def _reorder(self) -> None:
        """Put the rows present in the wanted order (a sort only when they are not in it)."""
        present = self.keys_in_order()
        if present != sorted(present, key=self._order.__getitem__):
            self.sort(self._column_keys[0], key=lambda cell: self._order[cell.row_key])

    def _seat_cursor(self, keep: str | None, old_index: int) -> None:
        if not self.row_count:
            return
        index = self.get_row_index(keep) if keep in self.rows else min(old_index, self.row_count - 1)
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)

    def _fill_more(self, generation: int) -> None:
        """Add the next chunk of rows (the table was shown meanwhile: nothing, that `show` took over)."""
        if generation != self._generation or not self._pending:
            return
        keep, old_index = self._wanted_cursor or self.current_key, self.cursor_row
        with self.app.batch_update():
            self._add_pending(self.CHUNK_ROWS)
            if self._wanted_cursor in self.rows:
                self._wanted_cursor = None
            self._seat_cursor(keep, old_index)
        if self._pending:
            self.call_after_refresh(self._fill_more, generation)

    def _update_dimensions(self, new_rows) -> None:
        """DataTable's, with a cell's width read off its text (a `Text` on one line, as every cell here is)
        instead of rich's measure, which asked the terminal for its size once per cell."""
        if self._labelled_row_exists or any(self.rows[key].auto_height for key in new_rows if key in self.rows):
            super()._update_dimensions(new_rows)
            return
        columns = self.ordered_columns
        for row_key in new_rows:
            data = self._data.get(row_key)
            if data is None:
                continue
            for column in columns:
                cell = data.get(column.key)
                width = cell.cell_len if isinstance(cell, Text) else len(str(cell)) if cell is not None else 0
                if width > column.content_width:
                    column.content_width = width
        data_cells_width = sum(column.get_render_width(self) for column in self.columns.values())
        header_height = self.header_height if self.show_header else 0
        self.virtual_size = Size(data_cells_width + self._row_label_column_width,
                                 self._total_row_height + header_height)
