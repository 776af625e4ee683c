"""The clip record: one row of manifest.parquet, whether the clip was kept or dropped.

A record is a plain dict whose keys and types are fixed by `SCHEMA`, so every row has every
column (absent values are null, with a `*_reason` column saying why) and the Parquet file has the
same schema whatever clips a run happened to see. Nothing time- or machine-dependent is stored in
a row, so a resumed run, a re-run and a Ray run write identical manifests.
"""

from __future__ import annotations

import pyarrow as pa

PIPELINE_VERSION = "soul-data/3"  # 2: faces at 1 fps on grey frames, clips copied (edit list), trimmed_frames; 3: lmsync articulation, Fisher-z confidence

SCHEMA = pa.schema(
    [
        # provenance
        ("clip_id", pa.string()),
        ("source_id", pa.string()),
        ("source_path", pa.string()),
        ("source_bytes", pa.int64()),
        ("clip_index", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("pipeline_version", pa.string()),
        ("config_hash", pa.string()),
        # probe
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("duration_s", pa.float64()),
        ("source_duration_s", pa.float64()),
        ("has_audio", pa.bool_()),
        ("audio_sample_rate", pa.int32()),
        # quality
        ("blur", pa.float64()),
        ("brightness", pa.float64()),
        ("highlight", pa.float64()),
        ("black_fraction", pa.float64()),
        ("frozen_fraction", pa.float64()),
        # people
        ("category", pa.string()),
        ("person_evidence", pa.string()),
        ("num_faces", pa.int32()),
        ("face_height_ratio", pa.float64()),
        ("face_heights_px", pa.list_(pa.float64())),
        ("figure_height_ratio", pa.float64()),
        # speech and audio quality
        ("speech_ratio", pa.float64()),
        ("has_speech", pa.bool_()),
        ("dnsmos_ovrl", pa.float64()),
        ("dnsmos_sig", pa.float64()),
        ("dnsmos_bak", pa.float64()),
        ("dnsmos_p808", pa.float64()),
        ("audio_quality_reason", pa.string()),
        # sync
        ("lmsync_offset", pa.int32()),
        ("lmsync_conf", pa.float64()),
        ("lmsync_reason", pa.string()),
        ("speaker_face", pa.int32()),
        ("syncnet_offset", pa.int32()),
        ("syncnet_conf", pa.float64()),
        ("syncnet_reason", pa.string()),
        ("audio_shift_frames", pa.int32()),
        # motion
        ("motion_mean", pa.float64()),
        ("motion_p90", pa.float64()),
        # caption
        ("caption", pa.string()),
        ("caption_source", pa.string()),
        # outcome
        ("kept", pa.bool_()),
        ("drop_stage", pa.string()),
        ("drop_reason", pa.string()),
        ("video_file", pa.string()),
        ("audio_file", pa.string()),
        ("trimmed_frames", pa.int32()),  # frames a copied clip ends before the planned end_frame (B-frame runs)
    ]
)

COLUMNS = tuple(SCHEMA.names)


def new_record(**fields: object) -> dict:
    """A record with every column present (null unless given)."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown record fields: {sorted(unknown)}")
    rec = dict.fromkeys(COLUMNS)
    rec.update(fields)
    return rec


def drop(rec: dict, stage: str, reason: str) -> dict:
    """Mark a record dropped by `stage` with a reason a person can act on."""
    rec["kept"] = False
    rec["drop_stage"] = stage
    rec["drop_reason"] = reason
    return rec
