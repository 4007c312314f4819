"""The flows: each composes tasks from tasks/ into one run (prepare, fine-tune, evaluate), nothing more."""
