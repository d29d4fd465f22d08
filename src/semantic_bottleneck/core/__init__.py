"""The core: the conditional vector c of every model (its five tensors, `conditioning`), the
statistics the paper defines (`metrics`), the time conventions, the models a page analyses
(`analysis`) and the analyses of c behind the figures (c = T + Y, t-SNE, the AdaLN cost, Fig. 2's
schematic).
"""
