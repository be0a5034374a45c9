"""Fails the build when the base image lacks what requirements.txt asks for.

Each line is `name>=X,<Y` (or `==X`); versions compare numerically. The packages come from
Debian (docker/base/packages), so this is where a requirement the base does not meet shows up.
"""
import re
import sys
from importlib import metadata


def version_tuple(text):
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def satisfied(installed, spec):
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "==": lambda a, b: a[: len(b)] == b,
           ">": lambda a, b: a > b, "<=": lambda a, b: a <= b}
    for clause in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([\d.]+)\s*", clause)
        if not m:
            raise SystemExit(f"unsupported version clause {clause!r}")
        if not ops[m.group(1)](version_tuple(installed), version_tuple(m.group(2))):
            return False
    return True


def main(path):
    failed = []
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", line).groups()
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            failed.append(f"{path}:{number}: {name} is not installed in the base image")
            continue
        if spec and not satisfied(installed, spec):
            failed.append(f"{path}:{number}: {name} {installed} does not satisfy {spec}")
        else:
            print(f"{name} {installed}")
    if failed:
        print("\n".join(failed), file=sys.stderr)
        print("add the package to docker/base/packages, or relax requirements.txt", file=sys.stderr)
        sys.exit(1)


main(sys.argv[1])
