"""The verdicts: the paper's values (`paper`, data/paper_values.yaml), the per-model measurements behind
the text claims (`measures`), the tolerance rules (`rules`), the claims ledger (`ledger`) and the
checks run on the paper's own tables (`paper_checks`).
"""
