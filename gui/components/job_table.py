"""The live job table: every job the broker knows, uploads in flight, rejected rows.

Rows come from `rows.build_rows()` whenever the state changes, and only the rows that
changed go to the browser (`_show`); the cells are Quasar templates (badge, progress bar,
buttons) that emit `retry` / `dismiss` back.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from nicegui import events, ui

from gui.i18n import QUASAR, Lang, Translator, language, t, translator
from gui.identity import person
from gui.rows import Row, build_rows, changed_rows
from gui.services import Services
from gui.theme import watch

_LOCAL_TIME = (
    "v => { if (!v) return ''; const d = new Date(v * 1000);"
    " return d.toDateString() === new Date().toDateString()"
    " ? d.toLocaleTimeString(@locale@) : d.toLocaleString(@locale@); }"
)
"""The submit time in the browser's time zone, written the page language's way."""
_FIT = "width: 1%; white-space: nowrap"
"""Shrink a column to its content; the transcript column takes what is left."""
COLUMNS: list[dict[str, Any]] = [
    {"name": "name", "field": "name", "align": "left", "sortable": True,
     "style": "max-width: 16rem; overflow-wrap: anywhere"},
    {"name": "status", "field": "label", "align": "left", "sortable": True},
    {"name": "preview", "field": "preview", "align": "left"},
    {"name": "duration", "field": "duration", "align": "right", "style": _FIT},
    {"name": "language", "field": "language", "align": "left", "style": _FIT},
    {"name": "worker", "field": "worker", "align": "left", "style": _FIT},
    {"name": "created", "field": "created", "align": "left",
     "sortable": True, "style": _FIT, "headerStyle": _FIT},
    {"name": "actions", "field": "key", "align": "right", "style": _FIT},
]  # fmt: skip
"""The columns; each one's label is `column.<name>` in the reader's language."""

NAME_CELL = r"""
<q-td :props="props" data-testid="cell-name">
  <a v-if="props.row.open" :href="'/jobs/' + props.row.job_id"
     class="text-primary font-medium" style="text-decoration: none">{{ props.row.name }}</a>
  <span v-else class="font-medium">{{ props.row.name }}</span>
</q-td>
"""
STATUS_CELL = r"""
<q-td :props="props" data-testid="cell-status" style="min-width: 9rem">
  <q-badge :color="props.row.color" :label="props.row.label" class="q-py-xs q-px-sm" />
  <div v-if="props.row.progress !== null" class="q-mt-xs">
    <q-linear-progress :value="props.row.progress" rounded size="6px" color="primary"
                       instant-feedback />
    <div class="text-caption text-grey-7">{{ props.row.progress_label }}</div>
  </div>
  <q-linear-progress v-else-if="['checking', 'connecting', 'transcribing', 'queued']
                       .includes(props.row.status)"
                     indeterminate rounded size="4px" color="indigo-4" class="q-mt-xs" />
  <div v-if="props.row.detail" data-testid="cell-detail"
       class="text-caption q-mt-xs" style="white-space: normal; max-width: 16rem"
       :class="props.row.status === 'done' ? 'text-grey-7' : 'text-negative'">
    {{ props.row.detail }}</div>
</q-td>
"""
PREVIEW_CELL = r"""
<q-td :props="props" data-testid="cell-preview"
      style="white-space: normal; min-width: 10rem; max-width: 28rem">
  <div class="ellipsis-3-lines" :title="props.row.preview">{{ props.row.preview }}</div>
</q-td>
"""
ACTIONS_CELL = r"""
<q-td :props="props" data-testid="cell-actions">
  <div class="row no-wrap items-center justify-end" style="gap: 4px">
    <q-btn v-if="props.row.open" flat dense round color="primary" icon="article"
           :href="'/jobs/' + props.row.job_id" data-testid="open">
      <q-tooltip>@open@</q-tooltip>
    </q-btn>
    <q-btn v-if="props.row.retry" unelevated dense no-caps no-wrap color="primary" icon="refresh"
           label="@retry@" class="q-px-sm" data-testid="retry"
           @click="() => $parent.$emit('retry', props.row)" />
    <q-btn v-if="props.row.dismiss" flat dense round color="grey-7" icon="close"
           data-testid="dismiss" @click="() => $parent.$emit('dismiss', props.row)">
      <q-tooltip>@dismiss@</q-tooltip>
    </q-btn>
  </div>
</q-td>
"""
"""`@open@`, `@retry@`, `@dismiss@`: the `jobs.<word>` texts, filled in per page."""


PATCH_ROWS = """
const rows = mounted_app.elements[%d]?.props.rows;
if (rows === undefined) return;
const changed = new Map(%s.map((row) => [row.key, row]));
const gone = new Set(%s);
for (let i = rows.length - 1; i >= 0; i--) {
  const key = rows[i].key;
  if (gone.has(key)) rows.splice(i, 1);
  else if (changed.has(key)) { rows[i] = changed.get(key); changed.delete(key); }
}
rows.push(...changed.values());
"""
"""Apply changed rows and removed keys to the table's rows in the browser, in place.

NiceGUI sends an element whole when any of its props changes: every row of the table
on every event. This reaches into NiceGUI's client-side element store (`mounted_app`,
pinned with nicegui in pyproject.toml) to send just the rows that changed."""


def create(services: Services) -> ui.table:
    """The jobs card; its rows follow `services.state` for as long as the page lives."""
    words, lang = translator(), language()
    with ui.card().classes("w-full gap-2").mark("jobs-card"):
        count, search = _toolbar(services, words)
        table = _table(words, lang)
    table.bind_filter_from(search, "value")
    table.on("retry", lambda e: _retry(services, e, words))
    table.on("dismiss", lambda e: services.uploader.dismiss(_key(e)))

    who = person(services.settings)

    def update() -> None:
        rows = build_rows(services.state, services.store, who, lang)
        _show(table, rows)
        count.text = str(len(rows))

    watch(services.state, update)
    return table


def _show(table: ui.table, rows: list[Row]) -> None:
    """Make `rows` the table's rows, sending the browser only what changed.

    The server's copy is replaced without an update (a page loaded or reconnected later
    renders from it); an empty table is filled the ordinary way."""
    if not table.rows:
        table.rows = rows
        return
    changed, removed = changed_rows(table.rows, rows)
    if not changed and not removed:
        return
    with table.props.suspend_updates():
        table.rows = rows
    table.client.run_javascript(PATCH_ROWS % (table.id, json.dumps(changed), json.dumps(removed)))


def _toolbar(services: Services, words: Translator) -> tuple[ui.badge, ui.input]:
    async def refresh() -> None:
        if await services.feed.refresh():
            ui.notify(words("jobs.reloaded"), type="info", timeout=1500)
        else:
            reason = services.state.connection.reason
            ui.notify(words("jobs.unreachable", reason=reason), type="negative")

    with ui.row().classes("w-full items-center gap-2"):
        ui.icon("view_list", size="26px").classes("text-primary")
        ui.label(t("jobs.title")).classes("text-lg font-semibold")
        count = ui.badge("0", color="grey-6").props("rounded").mark("jobs-count")
        ui.space()
        search = ui.input(placeholder=t("jobs.filter")).props("dense outlined clearable")
        search.classes("w-56").mark("jobs-filter")
        with search.add_slot("prepend"):
            ui.icon("search")
        ui.button(t("jobs.refresh"), icon="refresh", on_click=refresh).props(
            'outline no-caps data-testid="refresh"'
        ).mark("refresh")
    return count, search


def _table(words: Translator, lang: Lang) -> ui.table:
    columns = [
        {**c, "label": words(f"column.{c['name']}") if c["name"] != "actions" else ""}
        for c in COLUMNS
    ]
    created = next(c for c in columns if c["name"] == "created")
    created[":format"] = _LOCAL_TIME.replace("@locale@", json.dumps(QUASAR[lang]))
    actions = ACTIONS_CELL
    for word in ("open", "retry", "dismiss"):
        actions = actions.replace(f"@{word}@", escape(words(f"jobs.{word}")))
    table = ui.table(
        columns=columns,
        rows=[],
        row_key="key",
        pagination={"rowsPerPage": 25, "sortBy": "created", "descending": True},
    )
    table.classes("w-full").mark("jobs").props('flat wrap-cells data-testid="jobs"')
    table.props["no-data-label"] = words("jobs.empty")
    for column, template in (("name", NAME_CELL), ("status", STATUS_CELL),
                             ("preview", PREVIEW_CELL), ("actions", actions)):  # fmt: skip
        table.add_slot(f"body-cell-{column}", template)
    return table


def _key(e: events.GenericEventArguments) -> str:
    return str(e.args.get("key", "")) if isinstance(e.args, dict) else ""


def _retry(services: Services, e: events.GenericEventArguments, words: Translator) -> None:
    if services.uploader.retry(_key(e)):
        name = e.args.get("name", "") if isinstance(e.args, dict) else ""
        ui.notify(words("jobs.retrying", name=name), type="info")
    else:
        ui.notify(words("jobs.cannot_retry"), type="warning")
