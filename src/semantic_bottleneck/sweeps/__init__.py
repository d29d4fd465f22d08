"""The pruning sweeps (Sec. 5, Tables 2, 3, 6 and 7): the paper's rows as prune specs (`spec`), their
producers on the testbed (`testbed`: class models; `continuous`: the continuous-condition model)
and the runner that caches them, samples the paper profile and sets them beside the paper (`run`).
"""
