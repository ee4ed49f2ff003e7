"""A live stream's decoding: a partial every step, committed segments that never change.

The policy (docs/protocol.md, "Live mode"): every `step` of new audio, the uncommitted audio
is decoded again from its start, with word timestamps; a step encodes only its audio
(`DecodeRequest.fit_window`; a closing step at least 15 s), not a whole 30 s window. The
leading words that this decode and an earlier one (`AGREE_GAP_S` of audio before) agree on
(LocalAgreement-2; case and punctuation aside) are committed: sent as `segment`s (one per
Whisper segment they belong to), never revised, and the buffer is cut in a gap after them
now and then, and the next decodes start there (no prompt: with word timestamps, the
committed text as a prompt made tiny.en's steps much slower and its words worse,
`bench/RESULTS.md`; the client's own `prompt` leads its first words). What is not committed
is the `partial`. Agreement on words, not on whole segments: a sentence read without a pause
is one Whisper segment, and its first words would wait for its end.

Voice activity (`workers.vad`, scored as packets arrive, on the event loop: a frame costs
~0.1 ms) shapes the steps: audio with no speech is never decoded and is dropped at once, so a
silent stream costs a VAD score and nothing else; leading silence is cut off before a
decode; and once the speech is followed by `pause` of silence the utterance is over — a step
runs at once, without waiting for the next `step` of audio, and commits all its text
(there is nothing left to agree with). A client's `commit` does the same now; `clear`
forgets the uncommitted audio (a step already decoding it is ignored when it returns). Speech
lasting `ONSET` after a close says at once that the next utterance began (`speech_onset`). A
decode never covers more than one Whisper window: once the uncommitted audio reaches
`FORCE_COMMIT_S`, the oldest complete segments are committed without agreement.

An utterance's opening steps, which only show a partial (`OPENING_S`), decode the speech
before it first (`LiveOptions.lead_in_ms`, kept across the close, the silence between left
out) and drop their copy of its words: with no speech before its first word, the decoder
mishears a start that it hears right when it runs on from the words before.

A new attempt of a stream (a resume, a worker's death) starts at `AssignBody.resume_at`,
the end of what earlier attempts committed, so no committed text is decoded again or changed.

Like `workers.stream`, this is free of asyncio and sockets; `workers.live_runner` drives it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from whisperfarm.protocol import SegmentData
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE, Pcm
from workers.engines import (
    CLOSING_FIT_FRAMES,
    LIVE_FIT_FRAMES,
    DecodedSegment,
    DecodedWord,
    DecodeRequest,
    DecodeResult,
)
from workers.settings import LIVE_LEAD_IN_MS
from workers.stream import StreamState
from workers.vad import DEFAULT_THRESHOLD, VoiceActivity

WINDOW = 30 * SAMPLE_RATE
"""A Whisper window: the most one step decodes."""
FORCE_COMMIT_S = 25.0
"""Uncommitted audio this long commits its oldest complete segments without agreement."""
SPEECH_PAD = SAMPLE_RATE // 5
"""Audio kept around speech (200 ms): VAD frames start late and end early on soft sounds."""
AGREE_GAP_S = 1.0
"""Two decodes agree only if the later one heard at least this much more audio: decodes
half a second apart share their errors (`bench/RESULTS.md`); partials still come every
step."""
TRIM_S = 10.0
"""Uncommitted audio after which the buffer is cut in a gap after the committed words."""
MIN_GAP_S = 0.08
"""A gap between words this wide is a safe place to cut (word times are approximate)."""
OVERLAP_S = 0.1
"""A word whose middle is this little before the committed end is still a new word."""
SEAM_WORDS = 2
"""How far (in words) from where the times put it the copy of the last committed word is
looked for."""
TOKENS_PER_SECOND = 8
MIN_NEW_TOKENS = 10
"""A step's decoder stops after this many tokens per second of its audio, plus the minimum:
fast speech is ~5 tokens/s with timestamps; a decoder past that is looping."""
SEAM_MATCH = 2
"""Committed words the decode's copy must match, at most (one word alone matches too often:
"you … ask what you")."""
MAX_REPEAT = 5
"""Longest run of committed words a decode may repeat at its start (dropped)."""
OPENING_S = 1.8
"""An utterance's first words are committed by agreement only from a decode of at least this
much of it: with less, two decodes can hear the same wrong start ("How do you marry" for
"Had he married"), and a committed wrong start stays, with the right words appended after
it. Longer held back partials of many streams (`bench/RESULTS.md`)."""
SAID_WORDS = 200
"""Committed words remembered (for finding the seam after them)."""

ONSET = SAMPLE_RATE // 4
"""Voice activity this long (250 ms, Silero's own shortest speech) tells an utterance has
begun (`LiveState.speech_onset`): a click or a breath scored as speech does not."""

MADE_UP_SECONDS = 0.02
MADE_UP_PROBABILITY = 0.05
MADE_UP_TAIL_S = 1.0
"""A word shorter or less likely than this was invented by the decoder (`_until_made_up`)."""

_Heard = tuple[DecodedWord, DecodedSegment]
"""A decoded word and the Whisper segment it belongs to."""

_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class LiveOptions:
    """The worker's live decoding settings (`WorkerSettings`); how often a stream steps is
    the runner's to say (`live_runner.LiveLoad`)."""

    beam_size: int = 1
    """Of the steps that wait for agreement; a step that commits all it decodes (a pause,
    a commit, the end) has no second decode to catch its errors: it takes the engine's
    beam and temperature fallback, as files do."""
    pause_ms: int = 500
    lead_in_ms: int = LIVE_LEAD_IN_MS
    """The speech before an utterance that its opening steps decode first (at least this
    much, from a gap between words; 0: none; `LiveState._leads_in`): a decode that starts
    cold at an utterance hears its first words worse ("How do you marry" for "Had he
    married" until 2 s of it) than one that runs on from the speech before it."""


@dataclass(frozen=True)
class Partial:
    """The uncommitted tail as the client sees it (stream seconds)."""

    text: str = ""
    start: float = 0.0
    end: float = 0.0


@dataclass(frozen=True)
class LeadIn:
    """The speech before an utterance (`LiveOptions.lead_in_ms`) and its words as the decoder
    heard them: where a decode's copy of them ends, the utterance's words begin."""

    pcm: Pcm
    words: tuple[DecodedWord, ...]
    """In the time of `pcm`."""

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


NO_LEAD_IN = LeadIn(np.zeros(0, np.int16), ())


@dataclass(frozen=True)
class LiveStep:
    """One step: the audio to decode (maybe none) and what to do with its text."""

    base: int
    """Stream position of `pcm[0]`; uncommitted audio before it is dropped (silence)."""
    pcm: Pcm
    closes: bool
    """Commit everything this step decodes (a pause, the client's commit, the end)."""
    generation: int
    """`LiveState.generation` when planned: a `clear` since makes the step moot."""
    request: DecodeRequest | None = None
    """None: nothing to decode (no speech); the step only drops audio."""
    speech_end: int | None = None
    """Where the voice activity in `pcm` ends (with its pad; None without VAD): words the
    decoder puts after it are made up ("Thank you." in the silence after speech)."""
    heard_to: int = 0
    """Stream position of the end of the audio received when the step was planned: a
    closing step commits every word before it."""
    lead_in: LeadIn = NO_LEAD_IN
    """Earlier speech decoded before `pcm` (its request's audio is both): its words are not
    this step's."""

    def to_request(self) -> DecodeRequest:
        assert self.request is not None
        return self.request


@dataclass
class _Hypothesis:
    """An earlier step's uncommitted words, to agree with (LocalAgreement-2)."""

    words: list[str] = field(default_factory=list)
    heard_to: int = 0
    """Stream position where the audio of its decode ended."""


class LiveState(StreamState):
    """One live stream's buffer, voice activity, agreement and partial (module docstring)."""

    def __init__(self, spec: AssignBody, options: LiveOptions) -> None:
        super().__init__(spec, chunk_seconds=FORCE_COMMIT_S)
        self.options = options
        self.generation = 0
        self.partial = Partial()
        self._pause = (spec.vad_pause_ms or options.pause_ms) * SAMPLE_RATE // 1000
        self._offset = round(spec.resume_at * SAMPLE_RATE)
        self._skip = self._offset
        """Samples of the replayed audio still to skip: earlier attempts committed them."""
        self._stepped_to = self._offset
        """Stream position of the end of the audio the last step looked at."""
        self._commit_asked = False
        self._previous = _Hypothesis()
        self._committed_to = self._offset
        """Stream position where the last committed word ends."""
        self._said: list[tuple[int, str]] = []
        """Committed words (their end, their text), the last `SAID_WORDS`."""
        self._unclosed = False
        """Words were heard since the utterance last closed: the next pause closes it, even
        when agreement has committed all of them (an edge that speaks in turns, the
        Realtime edge, ends a turn at that close)."""
        self._lead = spec.prompt
        """Leads the first words of the stream, or of the utterance after a `retune`."""
        self._prompt_due = True
        self._retune: tuple[str | None, str | None] | None = None
        """Language and prompt for the next utterance, once the one under way closes."""
        self._listen_from = self._offset
        """Stream position of the last close: speech after it begins the next utterance."""
        self._lead_in = NO_LEAD_IN
        self._onset_told = False
        self._vad: VoiceActivity | None = None
        if spec.vad:
            self._vad = VoiceActivity(spec.vad_threshold or DEFAULT_THRESHOLD)
            self._vad.restart_at(self._offset)

    # ---- audio and client requests --------------------------------------------------------

    def _append(self, samples: Pcm) -> None:
        if self._skip:
            skipped = min(self._skip, len(samples))
            samples, self._skip = samples[skipped:], self._skip - skipped
        if len(samples):
            super()._append(samples)
            if self._vad is not None:
                self._vad.feed(samples)

    def retune(self, language: str | None, prompt: str | None) -> None:
        """Decode the next utterance in `language` (None: detect) with `prompt`; at once
        when no utterance is under way."""
        self._retune = (language, prompt)
        if not self._unclosed and not self.partial.text:
            self._apply_retune()

    def _apply_retune(self) -> None:
        if self._retune is not None:
            (self.language, self._lead), self._retune = self._retune, None
            self._prompt_due = True
            self._lead_in = NO_LEAD_IN  # asked to start afresh

    def ask_commit(self) -> None:
        """The client ended its utterance: the next step commits what it decodes."""
        self._commit_asked = True

    def clear(self) -> None:
        """Forget the uncommitted audio now; a step decoding it is ignored on return."""
        end = self._end
        self.generation += 1
        self._drop(len(self._audio))
        self._stepped_to = end
        self._previous = _Hypothesis()
        self.partial = Partial()
        self._unclosed = False
        self._lead_in = NO_LEAD_IN
        self._listen(end)
        if self._vad is not None:
            self._vad.restart_at(end)

    def speech_onset(self) -> float | None:
        """Where the utterance under way began (stream seconds), once per utterance, as
        soon as `ONSET` of voice activity follows the last close; before any word of it is
        decoded (the Realtime edge's `speech_started`). None: nothing (new) to tell."""
        if self._vad is None or self._onset_told:
            return None
        spans = self._vad.speech_spans(self._listen_from)
        if sum(b - a for a, b in spans) < ONSET:
            return None
        self._onset_told = True
        return spans[0][0] / SAMPLE_RATE

    def _listen(self, position: int) -> None:
        """An utterance closed at stream position `position`: the next one begins after."""
        self._listen_from, self._onset_told = position, False

    @property
    def _end(self) -> int:
        """Stream position of the end of the buffered audio."""
        return self._offset + len(self._audio)

    @property
    def _opening(self) -> bool:
        """Nothing of the utterance under way is committed yet."""
        return self._committed_to <= self._listen_from

    @property
    def _said_to(self) -> int:
        """Stream position after which the buffered audio holds no committed word."""
        return max(self._offset, self._committed_to)

    # ---- steps ------------------------------------------------------------------------------

    def wants_step(self, step_ms: int) -> bool:
        """Time for a step: `step_ms` of new audio, a pause after speech, or a commit."""
        if self._commit_asked:
            return True
        if self._end - self._stepped_to >= step_ms * SAMPLE_RATE // 1000:
            return True
        return self._paused()

    def _paused(self) -> bool:
        """Speech in the buffer (or words heard since the last close), followed by at
        least `pause` of silence."""
        vad = self._vad
        if vad is None or vad.scored - self._stepped_to < SPEECH_PAD:
            return False
        if vad.trailing_silence() < self._pause:
            return False
        return self._unclosed or vad.has_speech(self._said_to)

    def next_step(self, final: bool) -> LiveStep:
        """Plan a step over the uncommitted audio (`final`: the stream has ended)."""
        step = self._plan(final)
        if step.closes:
            self._listen(step.heard_to)
        return step

    def _plan(self, final: bool) -> LiveStep:
        pcm = self._audio.view()
        offset, end = self._offset, self._end
        closes = final or self._commit_asked
        self._commit_asked = False
        self._stepped_to = end
        start, stop, speech_end = 0, len(pcm), None
        if self._vad is not None:
            said = self._said_to
            spans = [(a, b) for a, b in self._vad.speech_spans(offset, end) if b > said]
            if not spans:  # nothing said: drop it, but keep where a word may be starting
                closes = closes or (self._unclosed and self._vad.trailing_silence() >= self._pause)
                keep = 0 if closes else min(len(pcm), SPEECH_PAD)
                base, kept = end - keep, pcm[len(pcm) - keep :]
                return LiveStep(base, kept, closes, self.generation, heard_to=end)
            if spans[0][0] > said:  # silence after the committed words: skip it
                start = max(0, spans[0][0] - SPEECH_PAD - offset)
            speech_end = min(len(pcm), spans[-1][1] + SPEECH_PAD - offset)
            if closes or self._vad.trailing_silence() >= self._pause:
                stop, closes = speech_end, True
        stop = min(stop, start + WINDOW)
        audio = pcm[start:stop]
        lead = self._lead_in if self._leads_in(audio, closes) else NO_LEAD_IN
        request = self._request(
            np.concatenate([lead.pcm, audio]) if lead.seconds else audio, closes
        )
        heard_until = None if speech_end is None else speech_end - start
        return LiveStep(
            offset + start, audio, closes, self.generation, request, heard_until, end, lead
        )

    def _leads_in(self, audio: Pcm, closes: bool) -> bool:
        """Whether a step decodes the lead-in before `audio`: only those that show the
        utterance's opening and commit none of it (`OPENING_S`; the decoder sometimes drops
        a first word after the lead-in's, "And" in "… your country. And Mr. John", and a
        decode that commits must not), and only while it leaves the encoder's input its
        shortest (it then costs a few decoder tokens)."""
        fits = len(self._lead_in.pcm) + len(audio) <= LIVE_FIT_FRAMES * SAMPLE_RATE // 100
        return self._opening and not closes and len(audio) < OPENING_S * SAMPLE_RATE and fits

    def _request(self, pcm: Pcm, closes: bool) -> DecodeRequest:
        spec = self.spec
        return DecodeRequest(
            pcm,
            self.language,
            spec.task,
            self._lead if self._prompt_due else None,
            (),
            spec.temperature,
            word_timestamps=True,
            beam_size=None if closes else self.options.beam_size,
            max_new_tokens=round(len(pcm) / SAMPLE_RATE * TOKENS_PER_SECOND) + MIN_NEW_TOKENS,
            fallback=False,
            fit_window=CLOSING_FIT_FRAMES if closes else LIVE_FIT_FRAMES,
        )

    def apply(self, step: LiveStep, result: DecodeResult | None) -> list[SegmentData]:
        """A step's outcome: the segments it commits (in order); `partial` is updated."""
        if step.generation != self.generation:
            return []
        committed = self._outcome(step, result)
        if step.closes:
            self._apply_retune()  # the utterance is over: the next one's options
        return committed

    def _outcome(self, step: LiveStep, result: DecodeResult | None) -> list[SegmentData]:
        if step.closes:
            self._unclosed = False
        self._drop(step.base - self._offset)
        if result is None:
            self._previous, self.partial = _Hypothesis(), Partial()
            return []
        if self.language is None:
            self.language = result.language
        # A closing step's words are the last ever decoded from its audio: one it doubts at
        # its end, dropped, would be lost. With voice activity its audio ends with the
        # speech, so such a word is a real one; without, nothing says where speech ends,
        # and the step keeps what it heard, as a file stream with `vad: false` does. Words
        # squeezed to no time are still made up (a repeat: "Americans. And so my fellow …").
        ends_speech = step.closes and step.speech_end in (None, len(step.pcm))
        decoded = [(w, s) for s in result.segments for w in s.words or ()]
        heard = _until_made_up(
            _after_lead_in(decoded, step.lead_in),
            len(step.pcm) / SAMPLE_RATE,
            doubts=not ends_speech,
        )
        if step.speech_end is not None:
            heard = [(w, s) for w, s in heard if w.start * SAMPLE_RATE < step.speech_end]
        if step.closes:
            self._keep_lead_in(step, [w for w, _ in heard])
        new = self._after_committed(heard)
        heard_to = step.base + len(step.pcm)
        keep = len(new) if step.closes else self._agreed(new, len(step.pcm), heard_to)
        committed = [self._to_stream_time(piece) for piece in _pieces(new[:keep])]
        if keep:
            self._prompt_due = False
            self._committed_to = self._offset + round(new[keep - 1][0].end * SAMPLE_RATE)
            self._said += [(self._committed_to, w.word) for w, _ in new[:keep]]
            del self._said[:-SAID_WORDS]
        rest = [w for w, _ in new[keep:]]
        self._unclosed = self._unclosed or (not step.closes and bool(new))
        if keep or heard_to - self._previous.heard_to >= AGREE_GAP_S * SAMPLE_RATE:
            self._previous = _Hypothesis([_norm(w.word) for w in rest], heard_to)
        self.partial = _partial(rest, self._offset / SAMPLE_RATE)
        self._drop(len(step.pcm) if step.closes else self._trim_point([w for w, _ in heard]))
        return committed

    def _after_committed(self, heard: list[_Heard]) -> list[_Heard]:
        """The decode's words after the committed ones. Word times are approximate, so
        the time the last committed word ends only says roughly where to look: the new
        words begin right after the decode's copy of the last committed words, found by
        their text within `SEAM_WORDS` of that place; without one, where the time says,
        less a repeat of the committed tail at its start. Where the time says is judged
        by a word's middle: the first word of a decode is often given the decode's start
        (a word begun 0.2 s in, "ask" in JFK, said to start at 0), and the last word before
        a pause is often stretched into it, so a new word can start before the committed
        end by its times."""
        since = (self._committed_to - self._offset) / SAMPLE_RATE - OVERLAP_S
        at = _first_from(heard, since)
        said = [_norm(word) for end, word in self._said[-MAX_REPEAT:] if end > self._offset]
        seam = _seam(heard, at, said)
        if seam is not None:
            return heard[seam:]
        new = heard[at:]
        said = [_norm(word) for _, word in self._said[-MAX_REPEAT:]]
        for n in range(min(MAX_REPEAT, len(new), len(said)), 0, -1):
            if said[-n:] == [_norm(w.word) for w, _ in new[:n]]:
                return new[n:]
        return new

    def _agreed(self, words: list[_Heard], decoded: int, heard_to: int) -> int:
        """How many leading words to commit: those an earlier step at least `AGREE_GAP_S`
        of audio before had too (none of an utterance's opening `OPENING_S`); or, near a
        full window, the words of every segment but the last."""
        apart = heard_to - self._previous.heard_to >= AGREE_GAP_S * SAMPLE_RATE
        opening = self._opening and decoded < OPENING_S * SAMPLE_RATE
        previous = self._previous.words if apart and not opening else []
        agreed = 0
        while (
            agreed < min(len(words), len(previous))
            and _norm(words[agreed][0].word) == previous[agreed]
        ):
            agreed += 1
        if not agreed and decoded >= FORCE_COMMIT_S * SAMPLE_RATE and words:
            last = words[-1][1]
            agreed = sum(1 for _, s in words if s is not last) or len(words)
        return agreed

    def _keep_lead_in(self, step: LiveStep, words: list[DecodedWord]) -> None:
        """After a close, the next utterance's lead-in: the last `lead_in_ms` or more of the
        speech heard so far (this step's, after the lead-in before it if it is shorter),
        from a gap between words. A close that heard no words keeps the lead-in it had."""
        lead_s = self.options.lead_in_ms / 1000
        if not words or not lead_s:
            return
        speech = step.pcm[: len(step.pcm) if step.speech_end is None else step.speech_end]
        before = self._lead_in if len(speech) < lead_s * SAMPLE_RATE else NO_LEAD_IN
        pcm = np.concatenate([before.pcm, speech])
        timed = [*before.words, *(_moved(w, -before.seconds) for w in words)]
        end = len(pcm) / SAMPLE_RATE
        gaps = [(a.end + b.start) / 2 for a, b in itertools.pairwise(timed)]
        cut = max((gap for gap in gaps if end - gap >= lead_s), default=0.0)
        cut = max(cut, end - 2 * lead_s)  # no gap: one long word, or words without time
        self._lead_in = LeadIn(
            pcm[round(cut * SAMPLE_RATE) :].copy(),
            tuple(_moved(w, cut) for w in timed if (w.start + w.end) / 2 > cut),
        )

    def _trim_point(self, words: list[DecodedWord]) -> int:
        """Where to cut the buffer (0: keep it): past `TRIM_S`, in the widest gap after a
        committed word, so no word that follows loses its start; past `FORCE_COMMIT_S`,
        right after the last committed word, gap or not."""
        if len(self._audio) < TRIM_S * SAMPLE_RATE:
            return 0
        committed = (self._committed_to - self._offset) / SAMPLE_RATE
        best, widest = 0.0, MIN_GAP_S
        for word, following in zip(words, [*words[1:], None], strict=True):
            if word.end > committed + 1e-3:
                break
            start = following.start if following is not None else word.end + MIN_GAP_S
            if start - word.end >= widest:
                best, widest = (word.end + start) / 2, start - word.end
        if not best and len(self._audio) >= FORCE_COMMIT_S * SAMPLE_RATE:
            best = committed
        return max(0, round(best * SAMPLE_RATE))

    def _to_stream_time(self, segment: DecodedSegment) -> SegmentData:
        """As a file stream's, without the words the client did not ask for."""
        data = super()._to_stream_time(segment)
        if not self.spec.word_timestamps:
            data.words = None
        return data

    def _drop(self, samples: int) -> None:
        super()._drop(samples)
        if self._vad is not None and samples > 0:
            self._vad.forget_before(self._offset)


def _norm(word: str) -> str:
    """A word as agreement compares it: case and punctuation do not count."""
    return "".join(_WORD.findall(word.lower()))


def _first_from(heard: list[_Heard], seconds: float) -> int:
    """The index of the first word whose middle is at `seconds` or after (len: none): by its
    middle, as a word's start and end are often stretched into a pause beside it."""
    return next(
        (i for i, (w, _) in enumerate(heard) if (w.start + w.end) / 2 >= seconds), len(heard)
    )


def _seam(heard: list[_Heard], at: int, said: Sequence[str]) -> int | None:
    """Where the words after `said` (words already had) begin in `heard`: right after a copy
    of its last `SEAM_MATCH` words within `SEAM_WORDS` of `at`, where the times put it.
    None: no copy there (times alone must say)."""
    tail = list(said[-SEAM_MATCH:])
    if not tail:
        return None
    texts = [_norm(w.word) for w, _ in heard]
    for shift in sorted(range(-SEAM_WORDS, SEAM_WORDS + 1), key=abs):
        seam = at + shift
        if len(tail) <= seam <= len(texts) and texts[seam - len(tail) : seam] == tail:
            return seam
    return None


def _after_lead_in(heard: list[_Heard], lead: LeadIn) -> list[_Heard]:
    """The words after a step's lead-in, in the time of the step's own audio (each Whisper
    segment moved with its words). The lead-in's words end where the decode's copy of them
    ends; without one, where the times say, by a word's middle (the first word after a pause
    is often given a start in it)."""
    lead_s = lead.seconds
    if not lead_s:
        return heard
    at = _first_from(heard, lead_s)
    seam = _seam(heard, at, [_norm(w.word) for w in lead.words])
    after_lead = heard[at if seam is None else seam :]
    kept = {id(w) for w, _ in after_lead}
    moved: dict[int, DecodedSegment] = {}
    after = []
    for word, segment in after_lead:
        if id(segment) not in moved:
            own = tuple(w for w in segment.words or () if id(w) in kept)
            moved[id(segment)] = replace(
                segment,
                start=max(0.0, segment.start - lead_s),
                end=max(0.0, segment.end - lead_s),
                tokens=segment.tokens if own == segment.words else (),
                words=tuple(_moved(w, lead_s) for w in own),
            )
        after.append((_moved(word, lead_s), moved[id(segment)]))
    return after


def _moved(word: DecodedWord, by: float) -> DecodedWord:
    return replace(word, start=max(0.0, word.start - by), end=max(0.0, word.end - by))


def _until_made_up(heard: list[_Heard], decoded: float, doubts: bool = True) -> list[_Heard]:
    """The words before the first one the decoder made up after the speech: one it gives
    no time (Whisper squeezes what it invents at the end into zero-length words) where
    nothing timed follows it or in the last `MADE_UP_TAIL_S` of the audio, or (with
    `doubts`) an all but unlikely one in that tail. What follows such a word ("Thank you.
    Thank you very much.") is invented too; a real word cut off here is decoded again in
    the next step. A zero-length word with timed words after it, earlier than the tail, is
    a real word the alignment squeezed ("my" in "so, my fellow"): cutting there would lose
    the rest of an utterance that a pause is closing."""
    timed_after = len(heard)  # past the last word with a duration
    while timed_after and _timeless(heard[timed_after - 1][0]):
        timed_after -= 1
    for index, (word, _) in enumerate(heard):
        in_tail = word.start >= decoded - MADE_UP_TAIL_S
        timeless = _timeless(word) and (in_tail or index >= timed_after)
        unlikely = doubts and word.probability < MADE_UP_PROBABILITY and in_tail
        if timeless or unlikely:
            return heard[:index]
    return heard


def _timeless(word: DecodedWord) -> bool:
    return word.end - word.start < MADE_UP_SECONDS


def _pieces(words: list[_Heard]) -> list[DecodedSegment]:
    """Committed words as segments: one per Whisper segment they came from, with that
    segment's decoding figures (its tokens only when all its words are in)."""
    pieces: list[DecodedSegment] = []
    for segment, group in itertools.groupby(words, key=lambda pair: pair[1]):
        chosen = tuple(w for w, _ in group)
        whole = chosen == segment.words
        pieces.append(
            replace(
                segment,
                start=chosen[0].start,
                end=chosen[-1].end,
                text="".join(w.word for w in chosen),
                tokens=segment.tokens if whole else (),
                words=chosen,
            )
        )
    return pieces


def _partial(words: list[DecodedWord], base: float) -> Partial:
    text = "".join(w.word for w in words).strip()
    if not text:
        return Partial()
    return Partial(text, round(base + words[0].start, 3), round(base + words[-1].end, 3))
