"""checkpoint: what a checkpoint is, what it records, and where a run's snapshots live.

- `provenance.py`: the record beside a checkpoint (`<prefix>.json`): classes, mean, list,
  recipe; the one class-names reader.
- `snapshot_folder.py`: a snapshot folder's files: the state file, whole and broken snapshots,
  `corrupt/`, leftovers.
- `checkpoints.py`: finding and restoring checkpoints by name, shape-checked.
- `settings.py`: a restored run's class count, mean, names, colours and server ids: flag >
  `--dataset` > record > default.
"""
