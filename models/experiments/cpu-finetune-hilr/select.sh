#!/bin/bash
# Steps 1-2 of models/experiments/cpu-finetune-hilr/RULE.md, run after training ends.
set -x
cd /work/main
export DEBUG=1
R=/work/runs/ft-hilr
D=/work/data/tamper-v13
P=.venv/bin/python
while [ ! -f $R/train.done ]; do sleep 30; done
$P -m inference.ml.model_card average models/detector.pt $R/detector.pt --weights 0.5 0.5 --out $R/wise.pt
$P -m inference.ml.model_card average models/detector.pt $R/detector.pt --weights 0 1 --out $R/ft.pt
for c in ft wise; do
  $P manage.py calibrate_detector $D --weights $R/$c.pt --out $R/$c-cal.pt --split val --test-time-flip auto --verdict-model off > $R/cal-$c.json 2> $R/cal-$c.err
done
for c in 0.9.0 ft-cal wise-cal; do
  W=$R/$c.pt; [ $c = 0.9.0 ] && W=models/detector.pt
  $P manage.py evaluate_detector $D --weights $W --split val --no-record --no-coco-ap --bootstrap 0 --out $R/val-full-$c > $R/val-full-$c.log 2>&1
  $P manage.py evaluate_detector $D --weights $W --split val --limit 200 --robustness --robustness-limit 200 --no-record --no-coco-ap --bootstrap 0 --out $R/val-$c > $R/val-$c.log 2>&1
done
echo done > $R/select.done
