"""Rate-limit counters on the embedded default's file cache: old backend against new.

Run from the repository root (about 30 s)::

    python bench/ratelimit_cache.py [--hits 2000] [--entries 2000] [--out bench/results/ratelimit_cache.md]

Both backends run in this process on temporary folders that already hold ``--entries``
other cache entries (sessions, hot entries: what a running server's cache holds).

- old: Django's ``FileBasedCache`` (``MAX_ENTRIES`` 300, its default), counting as the
  limiter used to: ``add`` then ``incr``. Every ``add`` of a new window lists the folder
  (``_cull``), and past ``MAX_ENTRIES`` a third of the entries are deleted at random,
  counters included;
- new: ``labeling.cache.FileCache`` as the ``ratelimit`` alias (expired entries only are
  ever dropped, the folder listed at most once a minute), one locked file per counter.

Measured: hits per second (one counter per client, 50 clients, round robin), and how many
of 50 live counters survive 1,000 writes of other entries to the same cache (a lost
counter is a rate limit that starts again from zero).
"""
import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django(data_dir):
    os.environ["CROWDLOOP_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")
    import django

    django.setup()


def old_count(cache, key, timeout):
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:
        if cache.add(key, 1, timeout=timeout):
            return 1
        return cache.incr(key)


def backends(base):
    from django.core.cache.backends.filebased import FileBasedCache

    from labeling.cache import FileCache

    old = FileBasedCache(str(base / "old"), {})
    new = FileCache(str(base / "new"), {"OPTIONS": {"CULL_EXPIRED_ONLY": True, "CULL_EVERY_S": 60}})
    return {
        "old: FileBasedCache, add + incr": (old, lambda key: old_count(old, key, 65)),
        "new: FileCache.count (ratelimit alias)": (new, lambda key: new.count(key, 65)),
    }


def fill(cache, n, prefix):
    for i in range(n):
        cache.set(f"{prefix}-{i}", {"session": i}, timeout=3600)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--out", default="bench/results/ratelimit_cache.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crowdloop-bench-rl-") as tmp:
        setup_django(tmp)
        rows = []
        for name, (cache, count) in backends(Path(tmp)).items():
            # Past MAX_ENTRIES, Django's set culls on every call: fill through the
            # backend's own writer so that both start from the same folder.
            fill(cache, args.entries, "other")
            clients = [f"client-{i}" for i in range(50)]
            start = time.perf_counter()
            for i in range(args.hits):
                count(clients[i % len(clients)])
            elapsed = time.perf_counter() - start
            live = [f"live-{i}" for i in range(50)]
            for key in live:
                count(key)
            fill(cache, 1000, "later")
            survived = sum(1 for key in live if count(key) == 2)
            rows.append((name, args.hits / elapsed, elapsed / args.hits * 1e3, survived))
        base = rows[0][1]
        lines = [
            f"Rate-limit counters on the file cache ({platform.machine()}, Python {platform.python_version()}, "
            f"load {os.getloadavg()[0]:.1f}); {args.hits} hits over 50 counters, {args.entries} other entries "
            "in the folder",
            "",
            "| backend | hits/s | ms/hit | ratio | live counters surviving 1,000 other writes |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, rate, ms, survived in rows:
            lines.append(f"| {name} | {rate:,.0f} | {ms:.2f} | {rate / base:.1f}x | {survived}/50 |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = ROOT / args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


if __name__ == "__main__":
    main()
