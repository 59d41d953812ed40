"""Rebuild ats.json from the CQL2 standard's Abstract Test Suite (see NOTICE).

Usage: python extract_ats.py GIT_DIR COMMIT  (a clone of opengeospatial/ogcapi-features)
Every table row "data source | predicate | expected count" of cql2/standard/annex_ats_*.adoc,
and the basic-cql2 combination table expanded into its stated expression. The cql2-json form
of each predicate is written by the ``cql2`` package (the standard gives only the text).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import cql2

ROW = re.compile(r"^\|(?:(?P<dep>[^|`]*)\|)?(?P<source>ne_110m_\w+) *\|`(?P<text>.+)` *\|(?P<count>\d+)\s*$")
COMBO = re.compile(r"^\|`(.+)` *\|`(.+)` *\|`(.+)` *\|`(.+)` *\|(\d+)\s*$")
COMBINED = "(NOT ({p2}) AND {p1}) OR ({p3} and {p4}) or not ({p1} OR {p4})"


def unescape(text: str) -> str:
    return text.replace("\\<", "<").replace("\\(", "(")


def main(git_dir: str, commit: str) -> None:
    def show(path: str) -> str:
        return subprocess.run(["git", "-C", git_dir, "show", f"{commit}:{path}"], check=True,
                              capture_output=True, text=True).stdout

    files = subprocess.run(["git", "-C", git_dir, "ls-tree", "--name-only", commit, "cql2/standard/"],
                           check=True, capture_output=True, text=True).stdout.split()
    cases = []
    for path in sorted(f for f in files if "annex_ats_" in f):
        cls = path.split("annex_ats_")[1].removesuffix(".adoc")
        for line in show(path).splitlines():
            if m := ROW.match(line):
                cases.append({"class": cls, "source": m["source"], "text": unescape(m["text"]),
                              "count": int(m["count"])})
            elif cls == "basic-cql2" and (m := COMBO.match(line)):
                p1, p2, p3, p4 = (unescape(m[i]) for i in range(1, 5))
                cases.append({"class": cls, "source": "ne_110m_populated_places_simple",
                              "text": COMBINED.format(p1=p1, p2=p2, p3=p3, p4=p4), "count": int(m[5])})
    for case in cases:
        case["json"] = cql2.Expr(case["text"]).to_json()
    with open("ats.json", "w", encoding="utf-8") as out:
        json.dump({"source": f"opengeospatial/ogcapi-features@{commit}", "cases": cases}, out,
                  ensure_ascii=False, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
