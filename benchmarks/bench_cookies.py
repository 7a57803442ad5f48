"""Cookie tools against flask-unsign 1.2.1, in the same run on the same machine.

    python benchmarks/bench_cookies.py [--lines 500000] [--runs 7]

- crack: candidates per second over the same plain wordlist (random lowercase words,
  the key on the last line so every tool reads it all and must find it), for
  `sesstool crack` (every core) and `flask-unsign --unsign` (its default 8 threads,
  with and without its literal-eval of every line). Rates are lines / wall time,
  start-up included (sesstool: best of 3 runs; its own timer shown too).
- cold start: best wall time of `sesstool decode COOKIE` against
  `flask-unsign --decode --cookie COOKIE`.

Needs flask-unsign (pip install 'sesstool[bench]'). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, SESSTOOL, best_of, run_timed, table  # noqa: E402

FLASK_UNSIGN = str(BIN / "flask-unsign")
KEY = "zz-the-real-key"


def make_wordlist(path: Path, lines: int) -> None:
    rng = random.Random(1)
    letters = string.ascii_lowercase
    with path.open("w") as out:
        for _ in range(lines - 1):
            out.write("".join(rng.choices(letters, k=rng.randint(6, 12))) + "\n")
        out.write(KEY + "\n")


def sign(data: dict[str, object]) -> str:
    result = subprocess.run(
        [SESSTOOL, "sign", json.dumps(data), "--secret-key", KEY],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def sesstool_crack(cookie: str, wordlist: Path, runs: int) -> tuple[float, float]:
    """Best wall time and best time by sesstool's own timer (no interpreter start-up)."""
    walls, internals = [], []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(
            [SESSTOOL, "crack", cookie, "--wordlist", str(wordlist), "--format", "json"],
            capture_output=True,
            text=True,
        )
        walls.append(time.perf_counter() - started)
        record = json.loads(result.stdout)
        assert result.returncode == 0 and record["secret_key"] == KEY, "sesstool crack did not find the key"
        internals.append(record["seconds"])
    return min(walls), min(internals)


def crack_rows(cookie: str, wordlist: Path, lines: int, runs: int) -> tuple[list[list[str]], float, float]:
    wall, internal = sesstool_crack(cookie, wordlist, runs)
    base = [FLASK_UNSIGN, "--unsign", "--cookie", cookie, "--wordlist", str(wordlist), "--quiet"]
    unsign = run_timed(base)
    unsign_ne = run_timed([*base, "--no-literal-eval"])
    ours = lines / wall
    theirs = max(lines / unsign.seconds, lines / unsign_ne.seconds)
    rows = [
        [f"sesstool crack (every core, best of {runs})", f"{wall:.2f}", f"{ours:,.0f}"],
        ["  same, its own timer (no interpreter start-up)", f"{internal:.2f}", f"{lines / internal:,.0f}"],
        ["flask-unsign --unsign (8 threads)", f"{unsign.seconds:.2f}", f"{lines / unsign.seconds:,.0f}"],
        ["flask-unsign --unsign --no-literal-eval", f"{unsign_ne.seconds:.2f}", f"{lines / unsign_ne.seconds:,.0f}"],
    ]
    return rows, ours, theirs


def cold_start_rows(cookie: str, runs: int) -> tuple[list[list[str]], float, float]:
    ours = best_of(runs, [SESSTOOL, "decode", cookie])
    theirs = best_of(runs, [FLASK_UNSIGN, "--decode", "--cookie", cookie])
    assert ours.returncode == 0 and theirs.returncode == 0
    rows = [
        ["sesstool decode", f"{ours.seconds * 1000:.0f}", f"{ours.max_rss_mb:.0f}"],
        ["flask-unsign --decode", f"{theirs.seconds * 1000:.0f}", f"{theirs.max_rss_mb:.0f}"],
    ]
    return rows, ours.seconds, theirs.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000, help="wordlist lines [500000]")
    parser.add_argument("--runs", type=int, default=7, help="cold-start runs, best kept [7]")
    args = parser.parse_args()
    if not Path(FLASK_UNSIGN).exists():
        raise SystemExit("flask-unsign is not installed here: pip install 'sesstool[bench]'")
    version = subprocess.run([FLASK_UNSIGN, "--version"], capture_output=True, text=True).stdout.strip()
    cookie = sign({"user_id": 42, "_fresh": True, "csrf_token": "f" * 40})

    with tempfile.TemporaryDirectory(prefix="sesstool-bench-") as tmp:
        wordlist = Path(tmp) / "words.txt"
        make_wordlist(wordlist, args.lines)
        print(f"crack: {args.lines:,} lines, key on the last line; flask-unsign {version}")
        rows, ours, theirs = crack_rows(cookie, wordlist, args.lines, 3)
    print(table(rows, ["tool", "seconds", "candidates/s"]))
    print(f"crack speed-up (wall, start-up included): {ours / theirs:.1f}x flask-unsign's best (target >= 20x)\n")

    rows, ours_s, theirs_s = cold_start_rows(cookie, args.runs)
    print(f"cold start: best of {args.runs} runs")
    print(table(rows, ["command", "ms", "max RSS MB"]))
    print(f"cold start ratio: {ours_s / theirs_s:.2f}x flask-unsign's (target <= 0.5x)")


if __name__ == "__main__":
    main()
