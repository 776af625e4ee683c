"""soul.bench: Soul-Bench-compatible suites, runs, metrics and reports (`soul bench`).

- `suite`: the folder layout (<id>.png / <id>.wav / <id>.json) and `Case`.
- `media_suite`: the small suite built from ../shared/media.
- `run`: generate a suite with Soul or an external command, resumably.
- `metrics`, `signal`: offline metrics (dlib identity, shared lmsync estimator, colour drift,
  sharpness/noise, flicker, AV-Align, long-term curves).
- `syncnet`, `weighted`: metrics that need user-supplied weights, each declaring what it needs.
- `score`: evaluation_results.json + scores.json; `report`: Markdown/HTML/PNG.
"""
