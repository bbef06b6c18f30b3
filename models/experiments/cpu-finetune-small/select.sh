#!/bin/bash
# Selection per models/experiments/cpu-finetune-small/RULE.md, run after training ends (steps 1 and 2).
set -x
cd /work/main
R=/work/runs/ft-small
D=/work/data/tamper-v12
P=.venv/bin/python
while pgrep -f "train_detector /work/data/tamper-v12 --out $R" >/dev/null; do sleep 30; done
$P -m inference.ml.model_card average $R/detector.pt models/detector.pt --weights 0.5 0.5 --out $R/wise.pt
$P manage.py calibrate_detector $D --weights $R/detector.pt --out $R/ft-cal.pt --split val --test-time-flip auto --verdict-model off > $R/cal-ft.json 2> $R/cal-ft.err
$P manage.py calibrate_detector $D --weights $R/wise.pt --out $R/wise-cal.pt --split val --test-time-flip auto --verdict-model off > $R/cal-wise.json 2> $R/cal-wise.err
# full val with the region-size breakdown, for each candidate (0.7.2 as shipped)
$P manage.py evaluate_detector $D --weights models/detector.pt --split val --no-coco-ap --no-record --out $R/val-0.7.2 > $R/val-0.7.2.log 2>&1
for c in ft-cal wise-cal; do
  $P manage.py evaluate_detector $D --weights $R/$c.pt --split val --no-coco-ap --no-record --out $R/val-$c > $R/val-$c.log 2>&1
done
$P - <<'PY'
import json
R = "/work/runs/ft-small"
for c in ("0.7.2", "ft-cal", "wise-cal"):
    m = json.load(open(f"{R}/val-{c}/metrics.json"))
    b = json.load(open(f"{R}/val-{c}/breakdown.json"))["by_area"]
    small = [g for k, g in b.items() if k.endswith("< 500 px")]
    n = sum(g["n"] for g in small)
    right = sum(round(g["accuracy"] * g["n"]) for g in small)
    print(f"{c}: full val accuracy {m['accuracy']:.4f} macro F1 {m['macro_f1']:.4f}; under 500 px {right}/{n} = {right / n:.4f}")
PY
echo done > $R/select.done
