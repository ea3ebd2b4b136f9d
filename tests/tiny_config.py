"""The training settings of the tiny end-to-end runs (`agf run`, `agf study`): one epoch, small dictionaries.

Import as `from tiny_config import TINY_TRAINING` (pytest puts tests/ on the path) and append the
[dataset], [synth], [grid] and other sections a test needs.
"""

TINY_TRAINING = """
[factors]
n_words = 16
n_topics = 4
frames_per_track = 40
[train]
epochs = 1
batch_size = 8
loader_workers = 0
[transfer]
epochs = 2
[run]
workers = 2
"""
