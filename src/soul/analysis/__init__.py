"""Face and lip-sync analysis shared by the curation pipeline (`soul data`) and the benchmark.

Everything here runs offline with models that ship inside PyPI packages (dlib via
face_recognition_models); see docs/data.md for each model's licence.
"""

from soul.analysis.faces import FaceAnalyzer, FaceBox, FaceTrack, face_tracks, model_path, track_faces
from soul.analysis.identity import (
    SAME_PERSON_DISTANCE,
    cosine_similarity,
    face_embedding,
    identity_distance,
    mean_embedding,
    same_person,
)
from soul.analysis.lipsync import (
    DEFAULT_MAX_OFFSET,
    MIN_CONFIDENCE,
    SPEECH_BAND_HZ,
    SyncEstimate,
    articulation,
    estimate_offset,
    lmsync,
    lmsync_tracks,
    shift_audio,
    speech_band_energy,
)
from soul.analysis.mouth import inner_mouth_gap, mouth_crop, mouth_darkness, mouth_opening, mouth_series

__all__ = [
    "DEFAULT_MAX_OFFSET",
    "MIN_CONFIDENCE",
    "SAME_PERSON_DISTANCE",
    "SPEECH_BAND_HZ",
    "FaceAnalyzer",
    "FaceBox",
    "FaceTrack",
    "SyncEstimate",
    "articulation",
    "cosine_similarity",
    "estimate_offset",
    "face_embedding",
    "identity_distance",
    "inner_mouth_gap",
    "lmsync",
    "lmsync_tracks",
    "face_tracks",
    "mean_embedding",
    "model_path",
    "mouth_crop",
    "mouth_darkness",
    "mouth_opening",
    "mouth_series",
    "same_person",
    "shift_audio",
    "speech_band_energy",
    "track_faces",
]
