"""Adds to the kernel's link-order list every function of the kernel binary that `perf script`
shows on a call stack of an instruction-fetch page fault, keeping the list's order and appending
new functions in the order they first faulted.

Usage: perf script -F ip,sym,dso --no-demangle … | python3 link-order.py LIST BINARY
"""
import os
import sys


def main() -> None:
    list_path, binary = sys.argv[1], os.path.realpath(sys.argv[2])
    try:
        with open(list_path, encoding="utf-8") as f:
            known = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        known = []
    seen = set(known)
    added = []
    frames = 0
    suffix = f"({binary})"
    for line in sys.stdin:
        fields = line.split()
        if len(fields) < 3 or not line.rstrip().endswith(suffix):
            continue
        symbol = fields[1].split("+0x", 1)[0]
        if symbol == "[unknown]":
            continue
        frames += 1
        if symbol not in seen:
            seen.add(symbol)
            added.append(symbol)
    with open(list_path, "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in known + added)
    print(f"link-order: {frames} frames in the binary, {len(added)} new functions, "
          f"{len(known) + len(added)} listed", file=sys.stderr)


if __name__ == "__main__":
    main()
