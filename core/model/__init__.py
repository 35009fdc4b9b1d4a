"""The seq2seq responder.

Importing this package is cheap: TensorFlow is only imported by the modules that need it
(`layers`, `seq2seq`, `decoding`, `training`, `export`, `artifact`, `responder`).
"""

import os

# TensorFlow's C++ start-up chatter (CPU feature notices) is noise for a chat bot's users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
