"""What the cluster tests' workers run instead of `innerdpo train` / `innerdpo eval`: NOOP_STAGE, a shell script that
writes what an eval stage writes (RUN/eval.json), so that hundreds of runs take seconds, and holds a lock on the run
directory while it runs, so that two workers ever running one run at once leave a mark (RUN/../overlaps).
Imported by tests/test_cluster.py and, in the worker processes and submitit jobs, by DRIVER and `noop_stage_job`."""

from __future__ import annotations

import sys
from pathlib import Path

# argv: stage run_dir kind eval_json (this claim's staging folder's, `RunPaths.staged_eval`). Every run is an eval-only run whose stage takes $NOOP_S seconds (default 0.05), after
# waiting (up to a minute) while HOME/runs/<id>.hold exists: a run to SIGKILL mid-stage.
NOOP_STAGE = r"""#!/bin/sh
stage=$1 dir=$2 kind=$3 out=$4
exec 9>"$dir/stage.lock"
if ! flock -n 9; then echo "$dir" >> "$dir/../overlaps"; exit 3; fi
echo $$ > "$dir/$stage.pid"
id=$(basename "$dir" | cut -d- -f1)
hold="$(dirname "$dir")/$id.hold"
n=0
while [ -e "$hold" ] && [ $n -lt 600 ]; do sleep 0.1 9>&-; n=$((n + 1)); done
sleep "${NOOP_S:-0.05}" 9>&-
printf '{"shifts": {"in_domain": {"acc": 0.%s, "n": 8}}, "provenance": {"in_domain": {"dataset": "noop"}}}' \
  "$id" > "$dir/eval.json.partial"
mkdir -p "$(dirname "$out")"
mv "$dir/eval.json.partial" "$out"
"""

# Runs the real CLI with NOOP_STAGE: python -c DRIVER SCRIPT worker --home ...
DRIVER = r"""
import sys
from innerdpo_bench.queue import worker
script = sys.argv[1]
from innerdpo_bench.rundir import RunPaths
worker.stage_command = lambda run, stage, run_dir, resume_train=False: [
    "sh", script, stage, str(run_dir), run.kind, str(RunPaths(run_dir, run.kind).staged_eval(run.claims))]
from innerdpo_bench.cli.main import app
app(sys.argv[2:], prog_name="innerdpo")
"""


def write_stage(folder: Path) -> Path:
    script = folder / "noop_stage.sh"
    script.write_text(NOOP_STAGE)
    return script


def noop_stage_job(home: str, options, devices, script: str) -> int:
    """A submitit job (`launch.submitit_job`) whose worker runs NOOP_STAGE; it is pickled by reference, so the job
    process imports this module (tests/ on its PYTHONPATH)."""
    from innerdpo_bench.queue import launch, worker
    from innerdpo_bench.rundir import RunPaths

    worker.stage_command = lambda run, stage, run_dir, resume_train=False: [
        "sh", script, stage, str(run_dir), run.kind, str(RunPaths(run_dir, run.kind).staged_eval(run.claims))]
    return launch.submitit_job(home, options, devices)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("a helper module of tests/test_cluster.py")
