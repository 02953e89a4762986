"""Hostile inputs, table-driven: encodings, NUL and control characters, duplicate headers, wrong magic bytes, huge
and tiny numbers, dates out of range, keys that look like paths, HTML or formulas.

Each case goes through `forecast check` and `forecast run` (each under a timeout). It ends either in one `Error:`
line with exit code 1 and nothing written, or in a run that records every series (forecast, or failed with its
reason); never a traceback, a file outside --out, a changed input, a CSV cell a spreadsheet would run, or a raw
control character on the terminal.
"""

import gzip
import hashlib
import io
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forecast.cli import app

RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # anything but a line break
ROOT = Path(__file__).resolve().parent.parent


def csv_text(keys=("A", "B"), days: int = 40, start: str = "2024-01-01", y=None, header="unique_id,ds,y",
             newline="\n") -> str:
    dates = pd.date_range(start, periods=days, freq="D").strftime("%Y-%m-%d")
    lines = [header]
    for k in keys:
        for i, d in enumerate(dates):
            value = y(i) if y is not None else f"{10 + i % 7 + len(str(k)) % 3}"
            lines.append(f"{k},{d},{value}")
    return newline.join(lines) + newline


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pd.read_csv(io.StringIO(csv_text())).to_parquet(buffer, index=False)
    return buffer.getvalue()


BASE = csv_text()
ONE_ROW = "unique_id,ds,y\nA,2024-01-01,1\n"

# (id, file name, content, what happens: "ok" or a part of the error line)
CASES = [
    # encodings
    ("utf8-bom", "t.csv", b"\xef\xbb\xbf" + BASE.encode(), "ok"),
    ("utf16", "t.csv", BASE.encode("utf-16"), "UTF-16 text, not UTF-8"),
    ("latin1-key", "t.csv", csv_text(keys=("café", "B")).encode("latin-1"), "utf-8"),
    ("emoji-and-cjk-keys", "t.csv", csv_text(keys=("📦", "店舗")).encode(), "ok"),
    ("crlf", "t.csv", csv_text(newline="\r\n").encode(), "ok"),
    # NUL and control characters
    ("nul-in-key", "t.csv", csv_text(keys=("A\x00B", "C")).encode(), "ok"),
    ("nul-file", "t.csv", b"\x00" * 256, "not found"),
    ("esc-in-key", "t.csv", (BASE + "evil\x1b[2J\x1b]0;owned\x07,2024-01-01,1\n").encode(), "ok"),
    ("esc-in-header", "t.csv", BASE.replace("unique_id,ds,y", "unique_id,ds,y\x1b[31m", 1).encode(),
     "target column 'y' not found"),
    ("c1-and-bidi-in-key", "t.csv", csv_text(keys=("a\x9bb", "abc\u202edcb")).encode(), "ok"),
    ("tab-in-key", "t.csv", csv_text(keys=('"a\tb"', "B")).encode(), "ok"),
    ("newline-in-quoted-key", "t.csv", csv_text(keys=('"a\nb"', "B")).encode(), "ok"),
    # duplicate headers
    ("duplicate-target", "t.csv", ("unique_id,ds,y,y\n" + "".join(f"A,2024-01-{d:02d},{d},0\n" for d in range(1, 20))
                                   ).encode(), "column 'y' more than once"),
    ("duplicate-key", "t.csv", "unique_id,unique_id,ds,y\nA,B,2024-01-01,1\nA,B,2024-01-02,2\n".encode(),
     "column 'unique_id' more than once"),
    ("duplicate-unused", "t.csv", "unique_id,ds,y,x,x\nA,2024-01-01,1,0,0\nA,2024-01-02,2,0,0\n".encode(),
     "column 'x' more than once"),
    # wrong magic bytes
    ("parquet-named-csv", "t.csv", parquet_bytes(), "is a Parquet file (it starts with PAR1), not CSV"),
    ("gzip-named-csv", "t.csv", gzip.compress(BASE.encode()), "is gzip-compressed, not plain CSV"),
    ("gzip-named-parquet", "t.parquet", gzip.compress(BASE.encode()), "is gzip-compressed, not Parquet"),
    ("csv-named-parquet", "t.parquet", BASE.encode(), "it does not start with PAR1"),
    ("csv-named-gz", "t.csv.gz", BASE.encode(), "is not gzip-compressed"),
    ("xlsx-named-csv", "t.csv", b"PK\x03\x04" + bytes(range(256)), "a ZIP archive"),
    ("random-bytes", "t.csv", hashlib.sha512(b"seed").digest() * 8, "t.csv: "),
    ("empty", "t.csv", b"", "the file is empty"),
    ("header-only", "t.csv", b"unique_id,ds,y\n", "the table has no data rows"),
    ("semicolons", "t.csv", BASE.replace(",", ";").encode(), "separate columns with ';'"),
    ("ragged-row", "t.csv", (BASE + "A,2024-03-01,1,1\n").encode(), "a row has 4 fields where the header has 3"),
    ("padded-header", "t.csv", BASE.replace("unique_id,ds,y", " unique_id , ds , y ", 1).encode(),
     "did you mean ' unique_id '?"),
    # huge and tiny numbers
    ("huge-values", "t.csv", csv_text(y=lambda i: f"{1e308 * (1 if i % 2 else -1)}").encode(), "ok"),
    ("overflow-to-inf", "t.csv", csv_text(y=lambda i: "1e309" if i == 5 else str(i)).encode(), "ok"),
    ("tiny-values", "t.csv", csv_text(y=lambda i: "5e-324" if i % 2 else "0").encode(), "ok"),
    ("inf-and-nan-texts", "t.csv", csv_text(y=lambda i: ("inf", "-inf", "nan", "1")[i % 4]).encode(), "ok"),
    ("text-value", "t.csv", csv_text(y=lambda i: "12abc" if i == 3 else "1").encode(), "is not a number: '12abc'"),
    ("one-row", "t.csv", ONE_ROW.encode(), "ok"),
    # dates out of range, and not dates
    ("before-1677", "t.csv", csv_text(start="1600-01-01").encode(), "outside the range pandas holds"),
    ("after-2262", "t.csv", csv_text(start="2263-01-01").encode(), "outside the range pandas holds"),
    ("year-9999", "t.csv", BASE.replace("2024-01-01", "9999-12-31", 1).encode(), "outside the range"),
    ("february-30", "t.csv", BASE.replace("2024-01-05", "2024-02-30", 1).encode(), "'2024-02-30'"),
    ("epoch-seconds", "t.csv", "unique_id,ds,y\nA,1700000000,1\nA,1700086400,2\n".encode(), "not a time: '1700000000'"),
    ("horizon-past-2262", "t.csv", csv_text(start="2262-03-01").encode(), "ok"),
    # keys that look like paths, HTML or formulas
    ("path-keys", "t.csv", csv_text(keys=("../../etc/passwd", "/tmp/evil", "C:\\Windows\\x", "~/.ssh/id")).encode(),
     "ok"),
    ("html-key", "t.csv", csv_text(keys=("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")).encode(), "ok"),
    ("formula-keys", "t.csv", csv_text(keys=('"=HYPERLINK(""http://x"",""y"")"', "+1+1", "@SUM(A1)", "-cmd")).encode(),
     "ok"),
    ("long-key", "t.csv", csv_text(keys=("k" * 5000, "B")).encode(), "ok"),
    ("blank-key", "t.csv", (BASE + " ,2024-01-01,1\n").encode(), "is empty at row"),
]


class Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    """A hang fails the case instead of the whole suite."""
    def expire(signum, frame):
        raise Timeout(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def invoke(*args) -> tuple[int, str, str]:
    with time_limit(120):
        result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback: {result.exception!r}") from result.exception
    assert not RAW_CONTROL.search(result.stdout + result.stderr), repr(result.stdout + result.stderr)
    return result.exit_code, result.stdout, result.stderr


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case,name,content,expect", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_input_is_one_line_or_a_record_per_series(tmp_path, case, name, content, expect):
    table = tmp_path / "in" / name
    table.parent.mkdir()
    table.write_bytes(content)
    before = files(tmp_path)
    check_out, run_out = tmp_path / "check", tmp_path / "run"
    run_args = ["run", table, "--horizon", 3, "--engine", "fast", "--n-jobs", 1, "--uncertainty-samples", 0,
                "--format", "csv", "--out", run_out]
    code, stdout, stderr = invoke("check", table, "--out", check_out)
    if expect != "ok":
        for command_code, command_stderr, out in [(code, stderr, check_out), (*invoke(*run_args)[::2], run_out)]:
            assert command_code == 1, command_stderr
            lines = command_stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: ") and expect in lines[0], command_stderr
            assert not out.exists()
    else:
        assert code == 0, stderr
        series = len(pd.read_csv(check_out / "profile.csv"))
        code, stdout, stderr = invoke(*run_args)
        assert code in (0, 3), stderr
        timings = pd.read_csv(run_out / "timings.csv", keep_default_na=False)
        assert len(timings) == series  # every series has its record: forecast, or failed with its reason
        assert ((timings["status"] == "ok") | (timings["error"] != "")).all()
        forecasts = pd.read_csv(run_out / "forecasts.csv", dtype=str, keep_default_na=False)
        cells = forecasts["unique_id"].tolist()
        assert not [c for c in cells if c[:1] in ("=", "+", "@") or (c[:1] == "-" and not c[1:].isdigit())]
    after = files(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith(("check/", "run/"))} == before


@pytest.mark.slow
def test_an_escape_sequence_in_a_key_reaches_the_log_escaped(tmp_path):
    """`failed:` lines and the error line of a real process: ESC, BEL and NUL shown as \\x1b, \\x07, \\x00."""
    table = tmp_path / "t.csv"
    # a series that fails (infinite values) under a key with control characters
    table.write_text(BASE + "evil\x1b[2J\x07,2024-01-01,inf\nevil\x1b[2J\x07,2024-01-02,inf\n")
    proc = subprocess.run([sys.executable, "-m", "forecast", "run", table, "--horizon", "3", "--engine", "fast",
                           "--n-jobs", "1", "--min-obs", "2", "--out", tmp_path / "out"], capture_output=True,
                          timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    stderr = proc.stderr.decode()
    assert proc.returncode == 3, stderr
    assert "failed: unique_id=evil\\x1b[2J\\x07: " in stderr
    assert not RAW_CONTROL.search(stderr + proc.stdout.decode())
    # a table error quoting a key (the duplicate rows' example): escaped too
    (tmp_path / "d.csv").write_text("unique_id,ds,y\nk\x1b[2J\x00,2024-01-01,1\nk\x1b[2J\x00,2024-01-01,2\n")
    proc = subprocess.run([sys.executable, "-m", "forecast", "check", tmp_path / "d.csv", "--out", tmp_path / "c"],
                          capture_output=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert "unique_id=k\\x1b[2J\\x00, ds=2024-01-01" in proc.stderr.decode()
    assert not RAW_CONTROL.search(proc.stderr.decode())


@pytest.mark.slow
def test_keys_that_look_like_paths_are_plotted_inside_the_plots_directory(tmp_path):
    pytest.importorskip("matplotlib")
    table = tmp_path / "in" / "t.csv"
    table.parent.mkdir()
    table.write_text(csv_text(keys=("../../escape", "/tmp/evil", "..", "C:\\Windows\\x", "a\x1b[2Jb")))
    before = files(tmp_path)
    code, _, stderr = invoke("run", table, "--horizon", 3, "--engine", "fast", "--n-jobs", 1, "--uncertainty-samples",
                             0, "--out", tmp_path / "run")
    assert code == 0, stderr
    code, stdout, stderr = invoke("plot", tmp_path / "run")
    assert code == 0, stderr
    plots = sorted((tmp_path / "run" / "plots").iterdir())
    assert len(plots) == 5 and all(p.suffix == ".png" and not RAW_CONTROL.search(p.name) for p in plots)
    new = set(files(tmp_path)) - set(before)
    assert all(name.startswith("run/") for name in new), sorted(new)
