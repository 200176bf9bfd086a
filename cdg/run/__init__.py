"""Running a training job: builders (config -> data, model, augmentation), the trainer, evaluation
of a run's encoder, the run directory, checkpoints, DDP helpers and the optimisers.

``cdg.train`` and ``cdg.eval`` are the command lines over these modules.
"""
