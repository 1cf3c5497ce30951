"""Coverage of the plausibility checks on the project's own held-out phantoms (classic look).

    .venv/bin/python -m bench.coverage --studies 10 --seed 900000

Each study is analysed in this process (`pipeline.analyse`, fp32 U-Net); printed per study: the
truth, the finding the SR would code (metastasis, primary or indeterminate) with its reasons and
P(metastasis); then coverage (share with a coded diagnosis) and the counts of right and wrong coded
diagnoses. DESIGN.md asks for at least 70 % coverage on in-distribution data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from phantom import generate_study, write_study
from pipeline.analysis import analyse
from pipeline.errors import InputRejected
from pipeline.volume import load_series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--seed", type=int, default=900000, help="first held-out seed (training never uses 900000+)")
    parser.add_argument("--matrix", default="256x256")
    args = parser.parse_args()
    rows, cols = (int(v) for v in args.matrix.split("x"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seed, args.seed + args.studies):
            study = generate_study(seed, matrix=(rows, cols))
            folder = write_study(study, Path(tmp))
            row: dict = {"seed": seed, "truth": study.params.label_name}
            try:
                a = analyse(load_series(sorted((folder / "series").glob("*.dcm"))), precision="fp32")
            except InputRejected as exc:
                row |= {"finding": None, "reasons": [str(exc.reason)]}
            else:
                verdict = a.verdict.summary() if a.verdict else {"finding": None, "reasons": []}
                p = a.classification.probability_metastasis if a.classification else None
                row |= verdict | {"p_metastasis": None if p is None else round(p, 3)}
            row["wrong"] = row["finding"] in ("metastasis", "primary") and row["finding"] != row["truth"]
            results.append(row)
            print(json.dumps(row), flush=True)
    coded = [r for r in results if r["finding"] in ("metastasis", "primary")]
    print(json.dumps({"studies": len(results), "coverage": round(len(coded) / max(len(results), 1), 3),
                      "correct_coded": sum(not r["wrong"] for r in coded),
                      "wrong_coded": sum(r["wrong"] for r in results)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
