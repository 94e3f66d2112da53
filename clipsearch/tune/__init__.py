"""Fine-tuning: labelled sets, training, cross-validation, checkpoints, evaluation. Kept apart from the search
library (as open_clip keeps open_clip_train apart): nothing outside cli/ imports it.
"""
