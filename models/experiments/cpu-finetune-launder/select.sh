#!/bin/bash
# Selection per models/experiments/cpu-finetune-launder/RULE.md, run after training ends.
set -x
cd /work/main
R=/work/runs/ft-launder
D=/work/data/tamper-v12
P=.venv/bin/python
while pgrep -f "train_detector /work/data/tamper-v12 --out $R" >/dev/null; do sleep 30; done
$P -m inference.ml.model_card average $R/detector.pt models/detector.pt --weights 0.5 0.5 --out $R/wise.pt
$P manage.py calibrate_detector $D --weights $R/detector.pt --out $R/ft-cal.pt --split val --test-time-flip auto --verdict-model off > $R/cal-ft.json 2> $R/cal-ft.err
$P manage.py calibrate_detector $D --weights $R/wise.pt --out $R/wise-cal.pt --split val --test-time-flip auto --verdict-model off > $R/cal-wise.json 2> $R/cal-wise.err
for c in ft-cal wise-cal; do
  $P manage.py evaluate_detector $D --weights $R/$c.pt --split val --limit 200 --robustness --robustness-limit 200 --no-record --out $R/val-$c > $R/val-$c.log 2>&1
done
$P manage.py evaluate_detector $D --weights models/detector.pt --split val --limit 200 --robustness --robustness-limit 200 --no-record --out $R/val-0.7.2 > $R/val-0.7.2.log 2>&1
echo done > $R/select.done
