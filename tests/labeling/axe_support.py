"""axe-core in the browser tests: the WCAG 2 A and AA rules (2.0 and 2.1) on a page.

axe-core (MPL-2.0, Deque Systems) comes bundled in the ``axe-playwright-python`` test
dependency as ``axe.min.js``; nothing is fetched at test time.
"""
import json
from functools import lru_cache
from pathlib import Path

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@lru_cache(maxsize=1)
def axe_script():
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8")


def axe_violations(page, context=None):
    """Short descriptions of every WCAG A/AA violation axe finds on ``page`` (or inside
    the ``context`` selector): ``"rule-id: target (summary)"``."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_script())
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    target = json.dumps(context) if context else "document"
    results = page.evaluate(f"axe.run({target}, {json.dumps(options)})")
    found = []
    for violation in results["violations"]:
        for node in violation["nodes"]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")[:160]
            found.append(f"{violation['id']}: {' '.join(map(str, node['target']))} ({summary})")
    return found
