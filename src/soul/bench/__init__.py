"""soul.bench: Soul-Bench-compatible suites, runs, metrics and reports (`soul bench`).

- `suite`: the folder layout (<id>.png / <id>.wav / <id>.json) and `Case`.
- `media_suite`: the small suite built from ../shared/media.
- `run`: generate a suite with Soul or an external command, resumably.
- `metrics`, `signal`: offline metrics (dlib identity, shared lmsync estimator, colour drift,
  sharpness/noise, flicker, AV-Align, long-term curves).
- `people`: per-person lip-sync binding of multi-person cases (own track vs the others' and chance).
- `syncnet`, `weighted`: metrics that need user-supplied weights, each declaring what it needs.
- `score`: evaluation_results.json + scores.json; `report`: Markdown/HTML/PNG.
"""
