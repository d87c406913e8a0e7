"""Classification stage: which communities an incident targets, what happened, how bad.

Pure functions over data. The lexicon lives in ``playbooks/communities.yaml`` and
``playbooks/incident_types.yaml``; :class:`Classifier` compiles it once.

    clf = Classifier.from_dir(Path("playbooks"))
    c = clf.classify(title, summary, cap_severity="Severe", country="CA")
"""

from prevent.classification.classify import Classification, Classifier
from prevent.classification.lexicon import LexiconError, load_lexicon, load_lexicon_errors

__all__ = ["Classification", "Classifier", "LexiconError", "load_lexicon", "load_lexicon_errors"]
