"""soul.jobs: files in, MP4 out (requests, validation, resume state): the job the CLI, the benchmark and the server run."""
