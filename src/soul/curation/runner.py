"""Run the curation stages over many videos, locally (process pool) or on Ray Data, resumably.

Output directory layout:
  records/<clip_id>.json   one finished clip (kept or dropped), written atomically, last
  sources/<source_id>.json a source whose clips are all finished (lists its clip ids)
  clips/<clip_id>.mp4|wav  the kept clips' media (audio already shifted to cancel the offset)
  manifest.parquet         every record, sorted by clip id (rebuilt at the end of each run)
  shards/soul-%06d.tar     WebDataset shards of the kept clips: mp4, wav, json (rebuilt likewise)
  run.json                 when and how the last run went (timings live here, not in rows)

Killing a run at any point loses at most the clips in flight: finished records stay, partial files
are temporaries that the next run ignores and overwrites. Rows hold nothing time- or
machine-dependent, so the manifest of a resumed run equals that of an uninterrupted one, and the
Ray engine's equals the local engine's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from soul.curation.config import CurationConfig
from soul.curation.records import COLUMNS, SCHEMA, new_record
from soul.curation.stages import annotate_clip, plan_source, source_fingerprint, write_json_atomic
from soul.errors import InputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
ENGINES = ("local", "ray")


def collect_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files given directly (whatever their suffix) and video files found under given folders."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(p, "not found", "give video files or folders that contain them")
    unique = sorted({q.resolve() for q in found})
    if not unique:
        raise InputError(", ".join(str(i) for i in inputs) or "INPUT", "holds no video files", f"give files ending in {sorted(VIDEO_SUFFIXES)}")
    return unique


def process_source(path: str, cfg_json: str, out: str) -> list[str]:
    """Plan one source and annotate each of its clips; mark the source finished. Returns clip ids."""
    cfg = CurationConfig.model_validate_json(cfg_json)
    ids = [annotate_clip(plan, cfg, out)["clip_id"] for plan in plan_source(path, cfg)]
    _mark_source_done(Path(out), path, ids)
    return ids


def _mark_source_done(out: Path, path: str, ids: list[str]) -> None:
    source_id, _ = source_fingerprint(Path(path))
    (out / "sources").mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sources" / f"{source_id}.json", {"source_path": str(Path(path).resolve()), "clip_ids": ids})


def pending_sources(paths: Sequence[Path], out: Path) -> list[Path]:
    """Sources not yet finished by an earlier run (a source whose file changed counts as new)."""
    todo = []
    for p in paths:
        source_id, _ = source_fingerprint(p)
        marker = out / "sources" / f"{source_id}.json"
        ids = json.loads(marker.read_text())["clip_ids"] if marker.is_file() else None
        if ids is None or not all((out / "records" / f"{i}.json").is_file() for i in ids):
            todo.append(p)
    return todo


def _run_local(todo: Sequence[Path], cfg: CurationConfig, out: Path, workers: int, progress: Callable[[str], None]) -> None:
    cfg_json = cfg.model_dump_json()
    if workers <= 1:
        for p in todo:
            process_source(str(p), cfg_json, str(out))
            progress(str(p))
        return
    import multiprocessing as mp

    # spawn, not fork: torch and dlib state must not be inherited half-initialised.
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(process_source, str(p), cfg_json, str(out)): p for p in todo}
        for fut in futures:
            fut.result()
            progress(str(futures[fut]))


def _run_ray(todo: Sequence[Path], cfg: CurationConfig, out: Path, workers: int, address: str | None, progress: Callable[[str], None]) -> None:
    """The same two steps as Ray Data tasks: flat_map(plan_source) then map(annotate_clip).

    Workers write records and media straight into `out`, so on a multi-node cluster `out` must be
    a shared filesystem (the usual NFS/object-store mount of a Ray cluster).
    """
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray", "Ray is not installed", "pip install 'soul-avatar[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict = {"address": address} if address else {"num_cpus": max(1, workers), "include_dashboard": False}
        ray.init(log_to_driver=False, ignore_reinit_error=True, **kwargs)
        started = True
    try:
        cfg_json = cfg.model_dump_json()
        out_s = str(out)

        def plan(row: dict) -> list[dict]:
            c = CurationConfig.model_validate_json(cfg_json)
            return [{"plan": json.dumps(p)} for p in plan_source(row["path"], c)]

        def annotate(row: dict) -> dict:
            c = CurationConfig.model_validate_json(cfg_json)
            rec = annotate_clip(json.loads(row["plan"]), c, out_s)
            return {"clip_id": rec["clip_id"], "source_id": rec["source_id"]}

        ds = ray.data.from_items([{"path": str(p)} for p in todo], override_num_blocks=max(1, len(todo)))
        done = ds.flat_map(plan).map(annotate).take_all()
        by_source: dict[str, list[str]] = {}
        for row in done:
            by_source.setdefault(row["source_id"], []).append(row["clip_id"])
        for p in todo:
            source_id, _ = source_fingerprint(p)
            _mark_source_done(out, str(p), sorted(by_source.get(source_id, [])))
            progress(str(p))
    finally:
        if started:
            ray.shutdown()


def _remove_stale_temporaries(out: Path) -> None:
    """Delete half-written files that killed workers left behind (the run that follows is complete).

    Every writer writes a hidden temporary and renames it, so a worker killed mid-write (a
    SIGKILLed process, a lost Ray node) leaves one behind; its clip was redone under another
    name. Only called once every clip of the run is finished, so none of them is in use.
    """
    for folder in (out / "clips", out / "records", out / "sources"):
        if folder.is_dir():
            for stale in folder.glob(".*"):
                if ".partial-" in stale.name or ".tmp-" in stale.name:
                    stale.unlink(missing_ok=True)


def read_records(out: Path) -> list[dict]:
    rows = []
    for f in sorted((out / "records").glob("*.json")):
        rec = json.loads(f.read_text())
        rows.append({k: rec.get(k) for k in COLUMNS})
    rows.sort(key=lambda r: r["clip_id"])
    return rows


def write_manifest(out: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows or [new_record()][:0], schema=SCHEMA)
    path = out / "manifest.parquet"
    tmp = out / f".manifest.parquet.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_shards(out: Path, rows: list[dict], cfg: CurationConfig) -> list[Path]:
    """WebDataset shards of the kept clips, in clip-id order, rebuilt from clips/ (deterministic)."""
    import webdataset as wds

    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    kept = [r for r in rows if r["kept"] and r["video_file"]]
    written: list[Path] = []
    index, count, size, writer, tmp = 0, 0, 0, None, None

    def close() -> None:
        nonlocal writer, tmp, index
        if writer is not None:
            writer.close()
            final = shard_dir / f"soul-{index:06d}.tar"
            os.replace(tmp, final)
            written.append(final)
            index += 1
            writer = None

    for r in kept:
        video = (out / r["video_file"]).read_bytes()
        audio = (out / r["audio_file"]).read_bytes() if r["audio_file"] else None
        if writer is not None and (count >= cfg.output.shard_max_samples or size + len(video) > cfg.output.shard_max_bytes):
            close()
        if writer is None:
            tmp = shard_dir / f".soul-{index:06d}.tar.tmp-{os.getpid()}"
            writer = wds.TarWriter(str(tmp))
            count, size = 0, 0
        sample = {"__key__": r["clip_id"], "mp4": video, "json": json.dumps(r, sort_keys=True).encode()}
        if audio is not None:
            sample["wav"] = audio
        writer.write(sample)
        count += 1
        size += len(video) + (len(audio) if audio else 0)
    close()
    for stale in shard_dir.glob("soul-*.tar"):
        if stale not in written:
            stale.unlink()
    return written


def annotate(
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    cfg: CurationConfig | None = None,
    engine: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Annotate every input video into `out`; skip what an earlier run finished. Returns a summary."""
    if engine not in ENGINES:
        raise InputError("--engine", f"unknown engine {engine!r}", f"use one of {ENGINES}")
    if workers < 1:
        raise InputError("--workers", f"must be >= 1, got {workers}", None)
    cfg = cfg or CurationConfig()
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder", "give a folder for --out")
    out.mkdir(parents=True, exist_ok=True)
    paths = collect_inputs(inputs)
    todo = pending_sources(paths, out)
    report = progress or (lambda _p: None)
    t0 = time.time()
    if todo:
        if engine == "local":
            _run_local(todo, cfg, out, workers, report)
        else:
            _run_ray(todo, cfg, out, workers, ray_address, report)
    _remove_stale_temporaries(out)
    rows = read_records(out)
    manifest = write_manifest(out, rows)
    shards = write_shards(out, rows, cfg)
    summary = {
        "sources": len(paths),
        "processed_sources": len(todo),
        "skipped_sources": len(paths) - len(todo),
        "clips": len(rows),
        "kept": sum(1 for r in rows if r["kept"]),
        "dropped": sum(1 for r in rows if not r["kept"]),
        "manifest": str(manifest),
        "shards": [str(s) for s in shards],
        "engine": engine,
        "workers": workers,
        "seconds": round(time.time() - t0, 2),
        "config_hash": cfg.digest(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(out / "run.json", summary)
    return summary
