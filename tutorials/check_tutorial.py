"""Runs one tutorial in C++ and in Python with the same arguments and checks what they print.

Both must exit 0 and print identical stdout, containing the expected lines; with --same-keys, lines
need only agree up to their first "=" (for measured values), and with --measured KEY only the
"KEY=" lines do, and "KEY=value" words inside other lines are compared up to their "=".
--expect-ge and --expect-gt compare a "KEY=number" line's value with a number or another key's
value, in each language's output. With --expect-fail, both must exit 1
and print one "[FAIL] <reason>" line on stderr.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional


def write_test_image(directory: Path) -> Path:
    """A deterministic 320x240 pattern, larger than the model input so it gets resized, and
    classified differently from the default grey frame."""
    import cv2
    import numpy as np

    y, x = np.mgrid[0:240, 0:320]
    checker = ((x // 40 + y // 40) % 2) * 200
    bgr = np.stack([x * 255 // 319, 255 - y * 255 // 239, checker], axis=-1).astype(np.uint8)
    path = directory / "pattern.png"  # PNG: lossless, so both decoders see the same pixels
    cv2.imwrite(str(path), bgr)
    return path


def mask_measured(line: str, measured: list[str]) -> str:
    """A line as compared with --measured: "KEY" for a "KEY=..." line, else with the value of each
    measured "KEY=value" word left out ("stage=draw compute_ms=0.52" -> "stage=draw compute_ms=")."""
    if line.split("=", 1)[0] in measured:
        return line.split("=", 1)[0]
    return " ".join(word.split("=", 1)[0] + "=" if "=" in word and word.split("=", 1)[0] in measured else word
                    for word in line.split(" "))


def shape(stdout: str, keys_only: bool, measured: list[str]) -> list[str]:
    """The lines to compare: whole, or only their "key=" part when values are measurements."""
    lines = [mask_measured(line, measured) for line in stdout.splitlines()]
    if not keys_only:
        return lines
    # Free-text lines (no "=") are compared up to their first digit, e.g. "throughput: 12.0 fps".
    return [line.split("=", 1)[0] if "=" in line else re.split(r"\d", line, maxsplit=1)[0] for line in lines]


def compare(lines: list[str], op: str, left: str, right: str) -> Optional[str]:
    """Checks "left=number" against a number or another key's value; returns the problem, if any."""
    values = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value

    def number(token: str) -> Optional[float]:
        try:
            return float(values[token] if token in values else token)
        except ValueError:
            return None

    a, b = number(left), number(right)
    if a is None or b is None:
        missing = left if a is None else right
        return f"printed no numeric {missing!r} line to compare"
    passed = a >= b if op == ">=" else a > b
    if passed:
        return None
    return f"{left}={a:g} is not {op} {right}" + (f" ({b:g})" if right in values else "")


def run(command: list[str]) -> subprocess.CompletedProcess:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpp", required=True, help="the C++ tutorial binary")
    parser.add_argument("--py", required=True, help="the Python tutorial script")
    parser.add_argument("--expect", action="append", default=[], help="a line stdout must contain")
    parser.add_argument("--expect-regex", action="append", default=[], help="a regex some line must match")
    parser.add_argument("--expect-count", nargs=2, metavar=("PREFIX", "N"), help="N lines start with PREFIX")
    parser.add_argument("--expect-ge", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="KEY's value >= VALUE, a number or another key (e.g. mean_iou 0.8)")
    parser.add_argument("--expect-gt", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="KEY's value > VALUE, a number or another key (e.g. fps_pipeline fps_sync)")
    parser.add_argument("--expect-fail", action="store_true", help="both must fail cleanly")
    parser.add_argument("--with-image", action="store_true", help="pass --image with a generated PNG")
    parser.add_argument("--same-keys", action="store_true", help="compare lines only up to the first '='")
    parser.add_argument("--measured", action="append", default=[], metavar="KEY",
                        help="compare KEY=... lines only up to the '=' (a measured value)")
    parser.add_argument("args", nargs="*", help="arguments for both tutorials (after --)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        args = list(options.args)
        if options.with_image:
            args += ["--image", str(write_test_image(Path(tmp)))]
        cpp = run([options.cpp, *args])
        py = run([sys.executable, options.py, *args])

    problems = []
    for name, result in (("C++", cpp), ("Python", py)):
        lines = result.stdout.splitlines()
        if options.expect_fail:
            if result.returncode != 1:
                problems.append(f"{name} exited {result.returncode}; expected 1")
            if not any(line.startswith("[FAIL] ") for line in result.stderr.splitlines()):
                problems.append(f"{name} printed no '[FAIL] <reason>' line on stderr")
            continue
        if result.returncode != 0:
            problems.append(f"{name} exited {result.returncode}")
        for line in options.expect:
            if line not in lines:
                problems.append(f"{name} did not print {line!r}")
        for pattern in options.expect_regex:
            if not any(re.search(pattern, line) for line in lines):
                problems.append(f"{name} printed no line matching {pattern!r}")
        if options.expect_count:
            prefix, count = options.expect_count[0], int(options.expect_count[1])
            seen = sum(line.startswith(prefix) for line in lines)
            if seen != count:
                problems.append(f"{name} printed {seen} lines starting {prefix!r}; expected {count}")
        for op, checks in ((">=", options.expect_ge), (">", options.expect_gt)):
            for left, right in checks:
                problem = compare(lines, op, left, right)
                if problem:
                    problems.append(f"{name} {problem}")
    if not options.expect_fail and shape(cpp.stdout, options.same_keys, options.measured) != shape(
            py.stdout, options.same_keys, options.measured):
        problems.append("C++ and Python printed different lines")

    for problem in problems:
        print("MISMATCH:", problem)
    print("tutorial check", "failed" if problems else "passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
