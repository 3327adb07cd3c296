"""training: the training run of `train_msc.py`.

- `losses.py`: the four softmax losses (fused and each scale) and the weight decay.
- `optim.py`: poly learning rate, momentum SGD / Adam with 1x / 10x / 20x groups, gradient
  accumulation.
- `train_step.py`: one training step built once for every caller (trainer, benchmarks).
- `snapshots.py`: where a run starts (resume, initial weights, scratch), writing and keeping
  snapshots, the best one.
- `runlock.py`: one run per snapshot folder (`train.lock`).
- `events.py`: the TensorBoard event file (graph once per folder, a full disk as one line).
- `stopping.py`: SIGTERM and Ctrl-C, at once during start-up.
- `run_summaries.py`: HParams, text and image summaries of a run.
- `validation.py`: `--val-list`, evaluated while training.
- `trainer.py`: the loop.
"""
