"""One page function per book page, grouped by the book's parts (as in `_toc.yml`).

Each function takes its notebook's parameters and returns an `analysis.Page` (tables, Markdown
blocks, figures, the values its text quotes); the notebook calls it, `pages.start(page)`, and
only displays what the page holds. The science lives in the modules these functions call.

- `conditional_vector` (Sections 1-4): fig01-cosine-and-npr `fig01_page`, fig02-schematic
  `fig02_page`, tab01-statistics `tab01_page`, fig03-cosine-matrix `fig03_page`, fig05-magnitudes `fig05_page`,
  fig06-c-over-dimensions `fig06_page`.
- `pruning` (Section 5): tab02-pruning-repa `tab02_page`, tab02-training-seeds
  `training_seeds_page`, tab03-pruning-mg-lightningdit
  `tab03_page`, fig07-head-removal `fig07_page`, fig08-tail-removal `fig08_page`,
  pruning-windows `pruning_windows_page`; and `sweep_outcome`, the pruning sweep behind a page
  with its notices as data.
- `semantics` (Section 6): fig09-variance `fig09_page`, fig11-threshold `fig11_page`,
  c-equals-t-plus-y `mechanism_page`, timestep-sweep `timestep_page`, fig12-training
  `fig12_page`, fig43-limited-timesteps `fig43_page`, scale-study `scale_study_page`,
  fig13-tsne `fig13_page`; and `recorded_gpu_runs`, the GPU-run section of Figs. 12 and 43.
- `continuous` (continuous conditions): fig04-continuous `fig04_page`, tab05-continuous
  `tab05_page`, tab07-pruning-continuous `tab07_page`, fig10-continuous-samples `fig10_page`.
- `appendix`: tab04-label-alone `tab04_page`, tab06-precision-recall `tab06_page`,
  fig42-adaln-cost `fig42_page`.
- `interactive`: interactive-pruning `interactive_page`.
- `verdicts`: index (the landing page) `landing_page`, claims-ledger `ledger_page`,
  not-reproduced `not_reproduced_page`.
"""
