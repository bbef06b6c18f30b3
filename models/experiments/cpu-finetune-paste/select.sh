#!/bin/bash
# Steps 1 and 2 of models/experiments/cpu-finetune-paste/RULE.md, run after training ends.
set -x
cd /work/main
R=/work/runs/ft-paste
D=/work/data/tamper-v12
P=.venv/bin/python
H=models/experiments/heldout-methods/heldout.py
while pgrep -f "train_detector /work/data/tamper-v12 --out $R" >/dev/null; do sleep 30; done
$P -m inference.ml.model_card average $R/detector.pt models/detector.pt --weights 0.5 0.5 --out $R/wise.pt
$P manage.py calibrate_detector $D --weights $R/detector.pt --out $R/ft-cal.pt --split val --test-time-flip auto --verdict-model off > $R/cal-ft.json 2> $R/cal-ft.err
$P manage.py calibrate_detector $D --weights $R/wise.pt --out $R/wise-cal.pt --split val --test-time-flip auto --verdict-model off > $R/cal-wise.json 2> $R/cal-wise.err
$P $H $D $R/heldout-val-0.9.0.json --split val > $R/heldout-val-0.9.0.log 2>&1
for c in ft-cal wise-cal; do
  $P $H $D $R/heldout-val-$c.json --split val --weights $R/$c.pt > $R/heldout-val-$c.log 2>&1
done
$P - <<'PY'
import json, torch
R = "/work/runs/ft-paste"
acc = {"0.9.0": torch.load("models/detector.pt", map_location="cpu", weights_only=False)["meta"]["calibrated_on"]["metrics"]}
for c, f in (("ft-cal", "cal-ft"), ("wise-cal", "cal-wise")):
    text = open(f"{R}/{f}.json").read()
    acc[c] = json.loads(text[: text.rfind("}") + 1])["val"]
for c in ("0.9.0", "ft-cal", "wise-cal"):
    h = json.load(open(f"{R}/heldout-val-{c}.json"))
    a = h["attacks"]
    print(f"{c}: full val accuracy {acc[c]['accuracy']:.4f} macro F1 {acc[c]['macro_f1']:.4f}; authentic flagged "
          f"{h['authentic']['flagged']:.4f}; seamlessClone {a['seamlessClone']['flagged']:.4f}; paste "
          f"{a['feathered paste']['flagged']:.4f}; harmonic {a['harmonic']['flagged']:.4f}; harmonic+noise "
          f"{a['harmonic+noise']['flagged']:.4f}")
PY
echo done > $R/select.done
