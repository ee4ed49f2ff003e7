"""A labelled transcript as turns, one colour per speaker, with the speakers renamable.

A rename is kept per browser (`app.storage.user`, by job), not with the job: the names
a person gives are theirs, the farm's downloads keep "S1", "S2"…, and nothing on the
broker changes. Colours follow the label (S1 is always the first colour), so a rename
never changes who looks like whom.
"""

from __future__ import annotations

from typing import Any

from nicegui import app, ui

from gui.i18n import Translator
from gui.rows import format_timestamp
from whisperfarm.transcripts import Transcript, speaker_number, turns

COLOURS = ("#1e88e5", "#d81b60", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#546e7a")
"""Turn colours, by speaker number (S1 the first); distinct on white and for most eyes."""
STORAGE_KEY = "speaker_names"


def colour(speaker: str) -> str:
    """The colour of "S<n>" (a label of another shape: the last colour)."""
    number = speaker_number(speaker)
    return COLOURS[(number - 1) % len(COLOURS)] if number is not None else COLOURS[-1]


def speakers_of(transcript: Transcript) -> list[str]:
    """The transcript's speaker labels in order of first appearance."""
    return list(dict.fromkeys(s.speaker for s in transcript.segments if s.speaker))


def _names(job_id: str) -> dict[str, str]:
    stored: dict[str, dict[str, str]] = app.storage.user.get(STORAGE_KEY, {})
    return dict(stored.get(job_id, {}))


def _rename(job_id: str, speaker: str, name: str) -> None:
    stored: dict[str, dict[str, str]] = dict(app.storage.user.get(STORAGE_KEY, {}))
    names = dict(stored.get(job_id, {}))
    if name.strip() and name.strip() != speaker:
        names[speaker] = name.strip()
    else:
        names.pop(speaker, None)
    stored[job_id] = names
    app.storage.user[STORAGE_KEY] = stored


def speaker_turns(job_id: str, transcript: Transcript, words: Translator) -> None:
    """The speakers card: a name field per speaker, then the turns (refreshed on rename)."""
    labels = speakers_of(transcript)

    @ui.refreshable
    def shown() -> None:
        names = _names(job_id)
        for turn in turns(transcript.segments):
            tint = colour(turn.speaker)
            with (
                ui.row()
                .classes("w-full items-start gap-3 no-wrap rounded p-2")
                .style(f"border-left: 4px solid {tint}; background: {tint}14")
                .props(f'data-testid="turn" data-speaker="{turn.speaker}"')
                .mark(f"turn-{turn.speaker}")
            ):
                with ui.column().classes("gap-0 shrink-0 w-32"):
                    ui.label(names.get(turn.speaker, turn.speaker)).classes("font-semibold").style(
                        f"color: {tint}"
                    ).props('data-testid="turn-speaker"')
                    ui.label(format_timestamp(turn.start)).classes("text-xs text-gray-500")
                ui.label(turn.text).classes("leading-relaxed")

    def renamed(speaker: str, event: Any) -> None:
        _rename(job_id, speaker, str(event.value or ""))
        shown.refresh()

    with ui.card().classes("w-full gap-3").mark("speakers"):
        with ui.row().classes("w-full items-center gap-3"):
            ui.label(words("speakers.title", count=len(labels))).classes("text-lg font-semibold")
            ui.label(words("speakers.kept")).classes("text-xs text-gray-500")
        with ui.row().classes("gap-3"):
            names = _names(job_id)
            for speaker in labels:
                ui.input(
                    speaker,
                    value=names.get(speaker, ""),
                    on_change=lambda e, who=speaker: renamed(who, e),
                ).props(f'dense outlined debounce=300 data-testid="rename-{speaker}"').style(
                    f"border-bottom: 3px solid {colour(speaker)}"
                ).mark(f"rename-{speaker}")
        with ui.column().classes("w-full gap-2").props('data-testid="turns"'):
            shown()
