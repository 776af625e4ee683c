"""Per-person lip-sync binding for multi-person cases: does each mouth follow its own track?

A multi-person case gives one audio track per person, left to right (`Case.speaker_audio`). A
method that binds audio to people moves person k's mouth with track k and not with the others'.
The measure reuses the shared landmark estimator (`soul.analysis.lipsync`): the face tracks of the
video are ordered left to right by their mean box centre x (person k is the k-th track), and each
person's mouth series is correlated with the speech-band energy of every speaker track over lags
within ±`DEFAULT_MAX_OFFSET` frames. A (person, track) score is the peak of that lag curve
(`SyncEstimate.correlations.max()`, a Pearson r at the best lag) of lmsync's mouth signal
(`articulation` of the inner-lip gap):

- `own`: against the person's own track; `cross`: against each other person's track (in person
  order, skipping the own), `cross_max` their maximum; `binds`: own > cross_max.
- `chance`: the mean score against the own track circularly shifted by more than the lag search
  reaches (see `chance_shifts`): what an unrelated track with the same speech statistics scores.

The peak correlation, not `SyncEstimate.confidence` (a Fisher z that also weighs how many
independent samples the clip has): binding compares tracks on the same frames, where r is the
direct measure of how strongly a mouth follows a track. On the four single talking clips of
shared/media the own track beat each of the three others in 12 of 12 pairs, own 0.45-0.66 against
chance 0.17-0.32. Before lmsync moved to the inner-lip articulation (the mouth darkness and a lag
curve whose overlap shrank with the lag) talking_face_3 failed (peak r 0.14 below chance 0.35).
The measure is still weak on clips of a few seconds, so read `chance` beside `own`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from soul.analysis.faces import FaceAnalyzer, face_tracks
from soul.analysis.lipsync import DEFAULT_MAX_OFFSET, articulation, estimate_offset, speech_band_energy
from soul.analysis.mouth import mouth_series
from soul.errors import InputError

CHANCE_MARGIN = 5  # frames beyond the lag search a shifted track must stay (smoothing + lip lead)
CHANCE_SHIFTS = 8


@dataclass
class PersonSync:
    """One person's binding scores (None where the person has no face track or nothing measures)."""

    person: int
    own: float | None = None
    cross: list[float] = field(default_factory=list)
    cross_max: float | None = None
    chance: float | None = None
    binds: bool | None = None
    offset: int | None = None  # lmsync offset against the own track (SyncNet sign)
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def chance_shifts(num_frames: int, max_offset: int = DEFAULT_MAX_OFFSET, count: int = CHANCE_SHIFTS) -> list[int]:
    """Circular shifts (frames) that move a track out of reach of the lag search.

    Why circular shifts of the own track for chance: the shifted track has exactly the own
    track's loudness, pauses and smoothness (what sets how high an unrelated peak correlation
    climbs), stays the right way round (time reversal turns sharp speech onsets into slow ones),
    needs no other case, and gives several draws instead of one. A shift within `max_offset +
    CHANCE_MARGIN` of 0 (mod n) would let the lag search find the true alignment again.
    """
    low = max_offset + CHANCE_MARGIN
    high = num_frames - low
    if high < low:
        return []
    return sorted({int(s) for s in np.round(np.linspace(low, high, count))})


def _peak(mouth: np.ndarray, energy: np.ndarray, max_offset: int) -> tuple[float, int | None]:
    est = estimate_offset(mouth, energy, max_offset=max_offset)
    return float(est.correlations.max()), est.offset


def bind_people(mouths: Sequence[np.ndarray | None], energies: Sequence[np.ndarray], *,
                max_offset: int = DEFAULT_MAX_OFFSET) -> list[PersonSync]:
    """Own, cross and chance scores for each person from mouth series and per-frame track energies.

    `mouths[k]` is person k's mouth series (None: no face track for that person), `energies[k]`
    the speech-band energy of track k on the video's frames. Pure, so it is tested without video.
    """
    if len(mouths) != len(energies):
        raise InputError("people", f"{len(mouths)} mouth series for {len(energies)} speaker tracks", None)
    out = []
    for k, mouth in enumerate(mouths):
        if mouth is None:
            out.append(PersonSync(person=k, note="no face track for this person in the video"))
            continue
        own, offset = _peak(mouth, energies[k], max_offset)
        cross = [_peak(mouth, e, max_offset)[0] for j, e in enumerate(energies) if j != k]
        shifts = chance_shifts(len(mouth), max_offset)
        chance = float(np.mean([_peak(mouth, np.roll(energies[k], s), max_offset)[0] for s in shifts])) if shifts else None
        flat = float(np.ptp(mouth)) < 1e-9
        out.append(PersonSync(person=k, own=own, cross=cross, cross_max=max(cross) if cross else None, chance=chance,
                              binds=(own > max(cross)) if cross else None, offset=None if flat else offset,
                              note="mouth signal is flat (no mouth movement)" if flat else None))
    return out


def _summary(people: list[PersonSync]) -> dict[str, Any]:
    """Case-level means for the suite summary; a missing person counts as not binding."""
    found = [p for p in people if p.own is not None]
    out: dict[str, Any] = {"people_bind_rate": sum(bool(p.binds) for p in people) / len(people) if people else None}
    for key in ("own", "cross_max", "chance"):
        vals = [getattr(p, key) for p in found if getattr(p, key) is not None]
        out[f"people_{key}"] = float(np.mean(vals)) if vals else None
    return out


def people_metric(frames: Sequence[np.ndarray], fps: float, speaker_audio: Sequence[np.ndarray], sample_rate: int,
                  analyzer: FaceAnalyzer | None = None, *, detect_every: int = 5, max_offset: int = DEFAULT_MAX_OFFSET) -> dict[str, Any]:
    """The binding measure of one video against its case's speaker tracks (see the module docstring).

    More face tracks than tracks of audio: the largest ones are the people (a small background face
    or a stray detection must not shift everyone's index). Fewer: persons from the right are
    reported missing, since person k is the k-th track from the left.
    """
    expected = len(speaker_audio)
    analyzer = analyzer or FaceAnalyzer()
    tracks = face_tracks(frames, analyzer, detect_every=detect_every)  # largest first
    people = sorted(tracks[:expected], key=lambda t: float(np.mean([b.center[0] for b in t.boxes])))
    out: dict[str, Any] = {"people_found": len(tracks), "people_expected": expected}
    mouths: list[np.ndarray | None] = [articulation(mouth_series(frames, analyzer, t)) for t in people]
    mouths += [None] * (expected - len(mouths))
    energies = [speech_band_energy(a, sample_rate, fps, len(frames)) for a in speaker_audio]
    try:
        result = bind_people(mouths, energies, max_offset=max_offset)
    except InputError as err:  # e.g. a clip too short for the lag search: reported, not scored as 0
        out["people"] = [PersonSync(person=k, note=err.problem).as_dict() for k in range(expected)]
        out["people_note"] = err.problem
        return out
    out["people"] = [p.as_dict() for p in result]
    out.update(_summary(result))
    return out
