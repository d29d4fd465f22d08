"""The book plumbing: the runner that executes the notebooks and builds the HTML and PDF (`runner`),
the warm kernels it forks each page's kernel from (`kernels`), which parameters each page runs
with (`params`), the browser check (`browser`), the artifact cache
(`cache`), and what pages share: the start-of-page helper (`pages`), display names and formats
(`display`), figures (`plots`), widgets and the build's provenance.
"""
