"""The training recipe (Sec. 5-6), read top to bottom in :mod:`.train`.

:mod:`.context` the run context; :mod:`.stages` the stage rules; :mod:`.steps` one batch and its loss;
:mod:`.loop` the epoch loop; :mod:`.validate` validation and model selection; :mod:`.metrics` the
evaluation metrics (Table 4's IoU criterion, nearest class mean); :mod:`.resume` checkpoints and exact
resume; :mod:`.distributed` torchrun / DDP; :mod:`.sampling` the seeded, resumable data order;
:mod:`.preflight` checks before anything is read or written.
"""
