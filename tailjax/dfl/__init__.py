"""Decision-focused learning: problems with their true p(c|x) (:mod:`tailjax.dfl.problems`),
regret metrics (:mod:`tailjax.dfl.metrics`), Pred-DFL baselines (:mod:`tailjax.dfl.baselines`)
and Gen-DFL (:mod:`tailjax.dfl.gen_dfl`). Import submodules by their full path; this package
imports nothing eagerly.
"""
