"""The training settings of the tiny end-to-end runs (`agf run`, `agf study`): one epoch, small dictionaries.

Import as `from tiny_config import TINY_CORPUS, TINY_TRAINING` (pytest puts tests/ on the path) and add the
[grid] and other sections a test needs.
"""

# A synthetic corpus of 27 tracks of 3 s (3 genres x 3 artists x 1 album x 3 tracks).
TINY_CORPUS = """
[dataset]
kind = "synth"
[synth]
n_genres = 3
artists_per_genre = 3
albums_per_artist = 1
tracks_per_album = 3
clip_seconds = 3.0
seed = 1
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
