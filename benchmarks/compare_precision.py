"""Final objectives of the same Part 1 runs in two precisions, side by side (docs/performance.md).

    make the runs:  for p in fp32 bf16 fp32-2threads; do .venv/bin/snakemake --cores 2 \
                        --configfile benchmarks/precision-$p.yaml \
                        -- results/precision-$p/part1/figures/{inversion,texture,transfer}_grid.png; done
    then:           .venv/bin/python benchmarks/compare_precision.py results/precision-fp32 \
                        results/precision-bf16 --spread results/precision-fp32-2threads

Every record under ROOT_A/part1 is matched with the record of the same path under ROOT_B; the table gives
each run's final objective (the weighted total of its last step) in both, their ratio, and the time per step
of each, and the largest deviation. With --spread ROOT_C (the same fp32 runs with another thread count, so
another order of summation), also C / A: how far fp32 is from itself, the yardstick for B / A. Nothing is
recomputed: it reads the records the workflow wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (benchmarks/tables.py, beside this script)
from stylelab.spec.records import read_record


def compare(root_a: Path, root_b: Path, spread: Path | None = None) -> list[dict]:
    rows = []
    for path_a in sorted((root_a / "part1").rglob("*.json")):
        path_b = root_b / path_a.relative_to(root_a)
        if not path_b.is_file():
            continue
        a, b = read_record(path_a), read_record(path_b)
        total_a, total_b = a.final_losses["total"], b.final_losses["total"]
        rows.append({"run": str(path_a.relative_to(root_a / "part1").with_suffix("")),
                     "a": total_a, "b": total_b, "ratio": total_b / total_a,
                     "precision_a": a.precision, "precision_b": b.precision,
                     "step_a": a.timing.time_per_step_s, "step_b": b.timing.time_per_step_s})
        path_c = spread / path_a.relative_to(root_a) if spread is not None else None
        if path_c is not None and path_c.is_file():
            rows[-1]["spread"] = read_record(path_c).final_losses["total"] / total_a
    return rows


COLUMNS = (
    ("run", "---", lambda r: r["run"]),
    ("final objective A", "---:", lambda r: f"{r['a']:.4g} ({r['precision_a']})"),
    ("final objective B", "---:", lambda r: f"{r['b']:.4g} ({r['precision_b']})"),
    ("B / A", "---:", lambda r: f"{r['ratio']:.4f}"),
    ("C / A", "---:", lambda r: f"{r['spread']:.4f}" if "spread" in r else "-"),
    ("s per step A", "---:", lambda r: f"{r['step_a']:.4f}"),
    ("s per step B", "---:", lambda r: f"{r['step_b']:.4f}"),
    ("speed-up", "---:", lambda r: f"{r['step_a'] / r['step_b']:.2f}x" if r["step_b"] else "-"),
)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root_a", type=Path, help="results root of the reference runs (fp32)")
    parser.add_argument("root_b", type=Path, help="results root of the runs to compare (bf16)")
    parser.add_argument("--spread", type=Path, default=None,
                        help="results root of the reference runs again with another thread count (fp32)")
    args = parser.parse_args(argv)
    rows = compare(args.root_a, args.root_b, args.spread)
    if not rows:
        raise SystemExit(f"no record under {args.root_a}/part1 has a match under {args.root_b}")
    worst = max(rows, key=lambda r: abs(r["ratio"] - 1))
    title = (f"{len(rows)} runs; largest deviation {100 * (worst['ratio'] - 1):+.2f}% ({worst['run']})")
    within = [r for r in rows if abs(r["ratio"] - 1) <= 0.03]
    title += f"; B within 3% of A: {len(within)} of {len(rows)}"
    if any("spread" in r for r in rows):
        steady = [r for r in rows if "spread" in r and abs(r["spread"] - 1) <= 0.03]
        title += f"; C (fp32 again) within 3% of A: {len(steady)} of {len(rows)}"
    print(tables.markdown(title, COLUMNS, rows))
    return rows


if __name__ == "__main__":
    main()
